"""The HTTP server: app factory, the /api dispatch table, handlers by domain, /pubsub, /health."""
