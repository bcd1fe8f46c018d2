"""The operator console at ``/console``: server-rendered pages over the same domain functions
the API calls, signed in with an API key exchanged for a session cookie."""
