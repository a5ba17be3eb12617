"""MicroBlog: a tiny static blog generator with a status server.

It is the demo application of a deployment tool, so it exercises the usual
moving parts of a release: a build step, a database migration step and a
long-running HTTP service with a health check.
"""
