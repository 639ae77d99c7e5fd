"""The REST API under /api/v1/: tenant-scoped reads for tenant tokens, and the admin scope for staff."""
