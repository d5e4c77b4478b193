"""A program written against the Python client generated from Medic's OpenAPI document.

tests/integration/test_generated_clients.py generates ``medic_client`` with openapi-python-client,
type-checks this file with ``mypy --strict`` and runs it against a real ``medic serve``:
``python client_script.py <base url> <admin key>``. Every answer it reads is a typed model, so
a response the document leaves untyped fails the type check, not just a test at run time.
"""

from __future__ import annotations

import sys

from medic_client import AuthenticatedClient
from medic_client.api.alerts import acknowledge_alert, list_alerts, resolve_alert
from medic_client.api.heartbeats import send_heartbeat, send_heartbeat_batch
from medic_client.api.services import create_service, get_service
from medic_client.models import (
    Alert,
    AlertPage,
    AlertState,
    BatchResult,
    CreateServiceBody,
    CreateServiceBodyExpectationType0,
    HeartbeatAccepted,
    HeartbeatIn,
    HeartbeatInStatus,
    ResolveAlertBody,
    SendHeartbeatBatchBody,
    Service,
)


def main(base_url: str, key: str) -> None:
    client = AuthenticatedClient(base_url=base_url, token=key, raise_on_unexpected_status=True)
    with client:
        created = create_service.sync(
            client=client,
            body=CreateServiceBody(
                slug="nightly-backup",
                expectation=CreateServiceBodyExpectationType0(kind="interval", period=3600),
                name="Nightly backup",
            ),
        )
        assert isinstance(created, Service), created
        assert created.state.value == "new"

        one = send_heartbeat.sync(client=client, body=HeartbeatIn(service="nightly-backup"))
        assert isinstance(one, HeartbeatAccepted), one
        assert one.status.value == "ok" and one.service_state.value == "up"

        # An exit code alone: the server decides (no default status is sent for the client).
        items = [
            HeartbeatIn(service="nightly-backup", status=HeartbeatInStatus.START, run_id="r1"),
            HeartbeatIn(service="nightly-backup", run_id="r1", exit_code=3, message="disk full"),
        ]
        batch = send_heartbeat_batch.sync(
            client=client,
            body=SendHeartbeatBatchBody(heartbeats=[item.to_dict() for item in items]),
        )
        assert isinstance(batch, BatchResult), batch
        assert (batch.accepted, batch.rejected) == (2, 0), batch
        ended = batch.results[1].heartbeat
        assert isinstance(ended, HeartbeatAccepted) and ended.status.value == "fail", ended

        alerts = list_alerts.sync(client=client, service="nightly-backup")
        assert isinstance(alerts, AlertPage), alerts
        (alert,) = alerts.items
        assert alert.cause.value == "failed" and alert.state == AlertState.OPEN

        acked = acknowledge_alert.sync(alert.id, client=client)
        assert isinstance(acked, Alert), acked
        assert acked.state == AlertState.ACKNOWLEDGED
        resolved = resolve_alert.sync(
            alert.id, client=client, body=ResolveAlertBody(note="disk cleaned")
        )
        assert isinstance(resolved, Alert), resolved
        assert resolved.state == AlertState.RESOLVED and resolved.resolution == "disk cleaned"

        service = get_service.sync("nightly-backup", client=client)
        assert isinstance(service, Service), service
        assert service.last_status is not None
        print("client script: ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
