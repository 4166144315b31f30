"""The official `twilio` SDK against Prism serving Twilio's own OpenAPI spec.

Prism checks each request against the spec and answers with the spec's fixed examples, so these
tests assert what the SDK sent (recorded at the HTTP-client seam) and that Prism accepted it.
No database needed."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from twilio.base import values
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from notifications.twilio_client import RecordingHttpClient, make_client, spec_path
from tests.prism import PrismServer

ACCOUNT_SID = "AC" + "0" * 32
TO, FROM = "+14155550100", "+14155550199"


@pytest.fixture
def http() -> RecordingHttpClient:
    return RecordingHttpClient()


@pytest.fixture
def client(prism: PrismServer, http: RecordingHttpClient) -> Client:
    return make_client(ACCOUNT_SID, "token", prism.url, http_client=http)


def test_spec_path_points_at_twilio_api_v2010() -> None:
    path = spec_path()
    assert path.is_file()
    assert path.name == "twilio_api_v2010.json"


def test_make_client_without_base_url_keeps_twilio() -> None:
    client = make_client(ACCOUNT_SID, "token")
    assert client.api.base_url == "https://api.twilio.com"


def test_message_create_is_accepted(client: Client, http: RecordingHttpClient,
                                    prism: PrismServer) -> None:
    message = client.messages.create(to=TO, from_=FROM, body="hello",
                                     status_callback="https://example.test/cb")

    assert message.sid.startswith("SM")     # Prism's example: the request passed validation
    [sent] = http.requests
    assert sent.method == "POST"
    assert sent.url == f"{prism.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert sent.data["To"] == TO
    assert sent.data["From"] == FROM
    assert sent.data["Body"] == "hello"
    assert sent.data["StatusCallback"] == "https://example.test/cb"


def test_message_without_to_is_rejected_by_prism(client: Client,
                                                 http: RecordingHttpClient) -> None:
    # The SDK insists on `to`; `values.unset` is how it leaves a parameter out of the body.
    with pytest.raises(TwilioRestException) as exc:
        client.messages.create(to=values.unset, from_=FROM, body="hello")

    assert exc.value.status == 422
    [sent] = http.requests
    assert "To" not in sent.data


def test_call_create_with_twiml_is_accepted(client: Client, http: RecordingHttpClient) -> None:
    twiml = "<Response><Say>hi</Say></Response>"
    call = client.calls.create(to=TO, from_=FROM, twiml=twiml)

    assert call.sid.startswith("CA")
    [sent] = http.requests
    assert urlsplit(sent.url).path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert sent.data == {"To": TO, "From": FROM, "Twiml": twiml}


def test_message_fetch_and_number_list(client: Client, http: RecordingHttpClient) -> None:
    sid = "SM" + "1" * 32
    message = client.messages(sid).fetch()
    numbers = client.incoming_phone_numbers.list(limit=5)

    assert message.sid.startswith("SM")
    assert 1 <= len(numbers) <= 5
    assert all(n.sid.startswith("PN") for n in numbers)
    assert [(r.method, urlsplit(r.url).path) for r in http.requests] == [
        ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json"),
        ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"),
    ]
    assert http.requests[1].params.get("PageSize") == 5
