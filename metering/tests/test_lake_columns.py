"""The metric format (pricing documents) and the lake's queries name the same columns."""


def test_the_columns_a_metric_may_name_are_the_lakes():
    """The parser checks a metric's field against the same columns the lake's queries are built on."""
    from metering.lake.queries import COLUMNS, NUMERIC_COLUMNS
    from metering.pricing.documents import ACCESS_LOG_COLUMNS
    from metering.pricing.documents import NUMERIC_COLUMNS as DOCUMENT_NUMERIC_COLUMNS

    assert set(ACCESS_LOG_COLUMNS) == set(COLUMNS)
    assert set(DOCUMENT_NUMERIC_COLUMNS) == set(NUMERIC_COLUMNS)
