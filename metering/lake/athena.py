"""The Athena lake: the deployed Iceberg table (Glue catalog + S3), queried through pyathena.

The queries are the same sqlglot trees as the local lake's, rendered in the ``athena`` dialect. A
query that ends FAILED or CANCELLED raises LakeError; one still running after ATHENA_QUERY_TIMEOUT
seconds is cancelled (StopQueryExecution, best effort) and raises LakeTimeout. Both are what the
usage sync retries with backoff, leaving the previous rows intact.

Before its first query a lake checks that the Glue table exists (Athena needs glue:GetTable for a
query anyway): a table that is not there is a LakeError, as a missing workgroup or any AWS error is,
never an empty answer.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

from metering.lake import queries
from metering.lake.base import Lake, LakeError, LakeTimeout
from metering.runs import beat

logger = logging.getLogger(__name__)

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")


class _StillRunning(Exception):
    def __init__(self, query_id: str, state: str):
        super().__init__(query_id)
        self.query_id = query_id
        self.state = state


class AthenaLake(Lake):
    dialect = "athena"

    def __init__(self, *, workgroup: str, database: str, table: str, region: str, output_location: str = "",
                 timeout: float = 300, poll_interval: float = 1.0, connect_kwargs: dict | None = None,
                 events_table: str = "events"):
        self.workgroup = workgroup
        self.database = database
        self.table_name = table
        self.events_table = events_table
        self.region = region
        self.output_location = output_location
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.connect_kwargs = connect_kwargs or {}
        self._checked: set[str] = set()

    @classmethod
    def from_settings(cls) -> AthenaLake:
        # A deployed pipeline environment (portal.deployments) supplies these unless the environment sets them.
        from portal.kernel import pipeline_setting as setting

        return cls(workgroup=setting("ATHENA_WORKGROUP"), output_location=setting("ATHENA_OUTPUT_LOCATION"),
                   database=setting("LAKE_DATABASE"), table=setting("LAKE_TABLE"), region=setting("AWS_REGION"),
                   timeout=settings.ATHENA_QUERY_TIMEOUT, events_table=setting("LAKE_EVENTS_TABLE"))

    def table_ref(self) -> dict:
        return {"table": self.table_name, "database": self.database}

    def events_ref(self) -> dict:
        return {"table": queries.events_relation(self.events_table, self.database), "database": None}

    def connect(self, on_poll=None):
        from pyathena import connect

        kwargs = {
            "work_group": self.workgroup,
            "region_name": self.region,
            "schema_name": self.database,
            "poll_interval": self.poll_interval,
            "on_poll": on_poll,
            **self.connect_kwargs,
        }
        if self.output_location:
            # Otherwise the workgroup's own result location (enforced by the deployed workgroup).
            kwargs["s3_staging_dir"] = self.output_location
        return connect(**kwargs)

    def check_table(self, table: str | None = None) -> None:
        """LakeError unless the Glue table (the access-log table, or ``table``) exists (asked once per lake object)."""
        table = table or self.table_name
        if table in self._checked:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        name = f"{self.database}.{table}"
        try:
            connection = self.connect()
            try:
                connection.session.client("glue", region_name=self.region).get_table(
                    DatabaseName=self.database, Name=table)
            finally:
                connection.close()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "EntityNotFoundException":
                setting = "LAKE_EVENTS_TABLE" if table == self.events_table != self.table_name else "LAKE_TABLE"
                raise LakeError(f"the Glue table {name} does not exist in {self.region} (LAKE_DATABASE, "
                                f"{setting}): is the pipeline deployed there? ({exc})") from exc
            raise LakeError(f"could not look up the Glue table {name}: {exc}") from exc
        except (BotoCoreError, ValueError) as exc:
            raise LakeError(f"could not look up the Glue table {name}: {type(exc).__name__}: {exc}") from exc
        self._checked.add(table)

    def execute(self, query, *, events: bool = False) -> list[tuple]:
        from botocore.exceptions import BotoCoreError, ClientError
        from pyathena.error import Error as AthenaError

        sql = queries.render(query, self.dialect)
        self.check_table(self.events_table if events else None)
        started = time.monotonic()

        def on_poll(execution) -> None:
            beat()  # a long query is work too: the run that waits for it is alive
            if execution.state not in TERMINAL_STATES and time.monotonic() - started > self.timeout:
                raise _StillRunning(execution.query_id, execution.state)

        try:
            connection = self.connect(on_poll=on_poll)
        except (BotoCoreError, ClientError, ValueError) as exc:
            raise LakeError(f"could not connect to Athena: {type(exc).__name__}: {exc}") from exc
        cursor = connection.cursor()
        try:
            cursor.execute(sql)
            return [tuple(row) for row in cursor.fetchall()]
        except _StillRunning as running:
            self._cancel(connection, running.query_id)
            raise LakeTimeout(
                f"Athena query {running.query_id} still {running.state} after {self.timeout:g} s; cancelled",
                {"query_id": running.query_id},
            ) from None
        except (AthenaError, BotoCoreError, ClientError) as exc:
            raise LakeError(f"Athena query failed: {exc}", {"query_id": getattr(cursor, "query_id", None)}) from exc
        finally:
            connection.close()

    def _cancel(self, connection, query_id: str) -> None:
        try:
            connection.client.stop_query_execution(QueryExecutionId=query_id)
        except Exception:  # best effort: the timeout is reported either way
            logger.warning("could not cancel Athena query %s", query_id, exc_info=True)
