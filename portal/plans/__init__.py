"""The plan builder (admin): a plan version edited as a form, a simulator beside it, and the versions page.

- forms.py: the builder's form and formsets, to and from a plan document (docs/plans.md), validated by the
  plan format's own parser with each message shown next to its field.
- views.py: the pages under /admin/plans/ (registered in portal/urls.py before the admin's URLs); saving goes
  through tenants.services.plans.plan_save, moves through tenants.services.subscriptions.subscription_change_plan.
"""
