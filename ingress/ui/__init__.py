"""The web UI of the admin API (``GET /ui``): invocations, their timelines and failures,
services and deployments, state, and invocation actions.

- :mod:`ingress.ui.views`: the endpoints (shell, assets, server-rendered views) and how the
  page authenticates (admin token in ``sessionStorage``, sent as a bearer token);
- :mod:`ingress.ui.data`: what the views read (SQL over the system tables);
- :mod:`ingress.ui.fallback`: the same rows without the ``sql`` extra;
- :mod:`ingress.ui.timeline`: a journal as a readable timeline (also used by the CLI).

Importing this package imports none of them.
"""
