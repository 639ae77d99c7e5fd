"""The Pro plan worked example, shared by the engine and price-preview tests: the plan and its preview output."""

PRO = {
    "code": "pro", "name": "Pro", "currency": "USD", "interval": "month",
    "base_fee": "49.00", "trial_days": 14, "minimum_commitment": "100.00",
    "charges": [
        {"metric": "api_calls", "model": "graduated",
         "tiers": [{"up_to": 10000, "unit_amount": "0"},
                   {"up_to": 1000000, "unit_amount": "0.0005"},
                   {"up_to": None, "unit_amount": "0.0002", "flat_amount": "25.00"}]},
        {"metric": "data_out_mb", "model": "per_unit", "unit_amount": "0.09"},
    ],
}

# `price_preview --usage api_calls=12000` for November 2026, exactly as the preview prints it.
PLANS_MD_OUTPUT = {
    "plan": "pro", "currency": "USD",
    "period_start": "2026-11-01T00:00:00Z", "period_end": "2026-12-01T00:00:00Z",
    "lines": [{"type": "base_fee", "description": "Pro base fee", "amount": "49.00"},
              {"type": "usage", "metric": "api_calls", "model": "graduated",
               "quantity": "12000", "amount": "1.00"},
              {"type": "usage", "metric": "data_out_mb", "model": "per_unit",
               "quantity": "0", "amount": "0.00"},
              {"type": "minimum_commitment", "description": "Minimum commitment true-up",
               "amount": "50.00"}],
    "total": "100.00",
}
