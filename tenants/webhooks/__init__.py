"""Webhooks: signed events to provider and tenant endpoints, recorded in an outbox and delivered at least once.

- ``registry``: the event types (and the serializers that turn a resource into its REST form).
- ``events``: ``webhook_emit``, called by services inside the transaction of the change.
- ``endpoints``: create, update, enable/disable, delete an endpoint, rotate its secret.
- ``delivery``: claiming an attempt, sending it, retries, the sweep, resending, disabling failing endpoints.
- ``transport``: the HTTP request, with the address checks (SSRF) and short timeouts.
- ``signing``: secrets and Standard Webhooks signatures.
"""
