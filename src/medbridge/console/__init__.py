"""The control tower: the web console MedBridge serves at ``/console``.

Server-rendered pages (Jinja2) over the same services the API uses, with two small front-end
pieces vendored from their npm packages with their licences (``static/vendor``): htmx for
partial updates and uPlot for the charts. Nothing is loaded from another host: every page is
served with ``Content-Security-Policy: default-src 'self'``, which a browser enforces.

Sign-in takes the same clients as the API (a client's name and its key); the session is a
signed cookie (``SameSite=Strict``, ``HttpOnly``, ``Secure`` under TLS) and every form carries
a CSRF token. Every page declares the permission it needs and honours the client's facility
scopes, as the API's routes do.
"""

from medbridge.console.app import create_console
from medbridge.console.rendering import MOUNT

__all__ = ["MOUNT", "create_console"]
