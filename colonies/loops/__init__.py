"""Background work as small `tick(services, now)` steps under one runner."""
