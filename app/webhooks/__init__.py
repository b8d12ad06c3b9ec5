"""Webhooks: endpoints, the outbox of events, deliveries and their attempts (docs/webhooks.md)."""
