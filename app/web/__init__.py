"""The dashboard: server-rendered pages under /app for people, served by the gateway itself.

A web adapter like the JSON routers: its handlers call the same service functions (app/<context>/service.py)
and hold no business rule; templates only show what the services return.
"""
