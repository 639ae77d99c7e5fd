"""Writes of the metering app: the usage sync (``sync``), billing (``billing/``), event ingestion (``events``),
the demo data and generated traffic (``demo``, ``traffic``)."""
