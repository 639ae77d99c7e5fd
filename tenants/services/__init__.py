"""Writes on tenants, plans and subscriptions: the one place each rule is enforced."""
