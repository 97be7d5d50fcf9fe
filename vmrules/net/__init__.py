"""HTTP for the sources and the service targets alike: one transport (http.client: deadlines, bounded
inflation, TLS, no redirects) and one policy (retries, the environment a rule file may read, secrets
scrubbed from every message)."""

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")   # hosts asked for uncompressed answers (faster there)
