"""restate_lambda: a pure-Python Restate SDK and the core shared by the restate-lambda runtime."""
