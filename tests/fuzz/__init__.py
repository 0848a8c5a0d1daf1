"""Hostile input at every HTTP route of bothub (hypothesis, derandomized).

- world.py: the two apps under fuzz (real `create_app` on a uvicorn socket, against the fakes),
  how requests are sent, and the properties every answer must have (no 5xx but a documented
  503, no trace, no configured secret, no open redirect, an answer within its time bound).
- routes.py: the routes read from `app.routes` and the fuzz tests made for each; a new route
  fails test_routes.py::test_every_route_has_a_dedicated_fuzz until it is listed there.
- strategies.py: hostile text, JSON, bodies, headers and paths shared by the tests.
- sanity.py: after a fuzz run the app still answers ordinary questions, each exactly once.
- known_bugs.py + test_known_bugs.py: what the fuzz found, excused precisely while open.
"""
