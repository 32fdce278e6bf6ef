"""Webhooks for the storefront (issue 8): subscriptions per event, signed deliveries with retries, a delivery log."""
