"""The REST API under /api/v1/: tenant-scoped reads for tenant tokens (and the events they post), and the admin
scope for staff."""
