"""Provider webhooks over real HTTP: signed right changes the subscriber; signed wrong, unsigned or
replayed is refused with 401/403 and changes nothing. SES arrives through SNS, its signing certificate
fetched over https from an allow-listed host (a local TLS server with a trustme CA)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from syndicate.bounces import BounceEvents
from syndicate.subscribers import SubscriberStatus, SuppressionList
from tests.bounce_support import serve_app
from tests.outbox_support import add_subscribers
from tests.web_helpers import ENVIRON

TOKEN = "generic-webhook-token-0123456789"
MAILGUN_KEY = "key-mailgun-signing-0123456789"
POSTMARK = ("postmark", "postmark-password-0123")
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"


def status_of(components, person) -> SubscriberStatus:
    return components.store.get(person.id).status


def event_count(components) -> int:
    return len(BounceEvents(components.database).list(limit=1000))


@pytest.fixture
def sendgrid_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def app(tmp_path, sendgrid_key):
    public = sendgrid_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    environ = {**ENVIRON, "SYNDICATE_WEBHOOK_TOKEN": TOKEN, "SYNDICATE_MAILGUN_SIGNING_KEY": MAILGUN_KEY,
               "SYNDICATE_POSTMARK_WEBHOOK_PASSWORD": POSTMARK[1]}
    webhooks = {"sendgrid_public_key": base64.b64encode(public).decode(), "postmark_username": POSTMARK[0]}
    with serve_app(tmp_path, environ, bounces={"webhooks": webhooks}) as (url, components):
        people = add_subscribers(components.database, 3)
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client, components, people


def test_generic_bearer_webhook(app):
    client, components, people = app
    body = {"events": [{"id": "evt-1", "type": "hard", "email": people[0].email, "status": "5.1.1", "diagnostic": "no such user"}]}
    assert client.post("/webhooks/generic", json=body).status_code == 401, "unsigned"
    assert client.post("/webhooks/generic", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert status_of(components, people[0]) is SubscriberStatus.ACTIVE and event_count(components) == 0
    answer = client.post("/webhooks/generic", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.json()["actions"] == ["bounced"]
    assert status_of(components, people[0]) is SubscriberStatus.BOUNCED
    again = client.post("/webhooks/generic", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert again.json()["actions"] == ["duplicate"] and event_count(components) == 1, "a retried event is recorded once"


def _sendgrid_post(client, key, events, *, timestamp=None, tamper=False):
    body = json.dumps(events).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    sent = body.replace(b"spamreport", b"delivered") if tamper else body
    return client.post("/webhooks/sendgrid", content=sent, headers={
        "Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Signature": signature,
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp})


def test_sendgrid_ecdsa_signed_events(app, sendgrid_key):
    client, components, people = app
    events = [{"email": people[1].email, "event": "spamreport", "sg_event_id": "sg-1", "timestamp": 1},
              {"email": people[2].email, "event": "delivered", "sg_event_id": "sg-2", "timestamp": 1}]
    assert client.post("/webhooks/sendgrid", json=events).status_code == 401, "unsigned"
    assert _sendgrid_post(client, sendgrid_key, events, tamper=True).status_code == 403, "body changed after signing"
    forger = ec.generate_private_key(ec.SECP256R1())
    assert _sendgrid_post(client, forger, events).status_code == 403, "signed with another key"
    assert _sendgrid_post(client, sendgrid_key, events, timestamp=int(time.time()) - 3600).status_code == 403, "stale"
    assert status_of(components, people[1]) is SubscriberStatus.ACTIVE and event_count(components) == 0

    body = json.dumps(events).encode()
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
               "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(
                   sendgrid_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()}
    answer = client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["actions"] == ["unsubscribed"], "delivered events are not recorded"
    assert status_of(components, people[1]) is SubscriberStatus.UNSUBSCRIBED
    assert SuppressionList(components.database).is_suppressed(people[1].email)
    assert client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 403, "replayed"
    assert event_count(components) == 1


def _mailgun(event: dict, *, key=MAILGUN_KEY, timestamp=None, token="tok-1") -> dict:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": event}


def test_mailgun_hmac_signed_events_with_a_timestamp_window_and_replay_refusal(app):
    client, components, people = app
    event = {"event": "failed", "severity": "permanent", "recipient": people[2].email, "id": "mg-1",
             "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "description": "mailbox does not exist"}}
    assert client.post("/webhooks/mailgun", json={"event-data": event}).status_code == 401, "unsigned"
    assert client.post("/webhooks/mailgun", json=_mailgun(event, key="not-the-key")).status_code == 403
    assert client.post("/webhooks/mailgun", json=_mailgun(event, timestamp=int(time.time()) - 3600)).status_code == 403
    assert status_of(components, people[2]) is SubscriberStatus.ACTIVE and event_count(components) == 0
    signed = _mailgun(event)
    answer = client.post("/webhooks/mailgun", json=signed)
    assert answer.status_code == 200 and answer.json()["actions"] == ["bounced"]
    assert status_of(components, people[2]) is SubscriberStatus.BOUNCED
    assert client.post("/webhooks/mailgun", json=signed).status_code == 403, "the same token again is a replay"
    [recorded] = BounceEvents(components.database).list()
    assert (recorded.kind, recorded.status_code, recorded.source) == ("hard", "5.1.1", "mailgun")


def test_postmark_basic_auth(app):
    client, components, people = app
    bounce = {"RecordType": "Bounce", "Type": "HardBounce", "TypeCode": 1, "ID": 42, "Email": people[0].email,
              "Description": "The server was unable to deliver your message"}
    assert client.post("/webhooks/postmark", json=bounce).status_code == 401
    assert client.post("/webhooks/postmark", json=bounce, auth=(POSTMARK[0], "wrong")).status_code == 403
    assert status_of(components, people[0]) is SubscriberStatus.ACTIVE and event_count(components) == 0
    answer = client.post("/webhooks/postmark", json=bounce, auth=POSTMARK)
    assert answer.status_code == 200 and answer.json()["actions"] == ["bounced"]
    assert status_of(components, people[0]) is SubscriberStatus.BOUNCED


def test_signed_events_with_fields_of_another_shape_are_taken_for_what_they_say_never_a_500(app):
    client, components, people = app
    odd = [  # Mailgun's delivery-status as text or a list: the event still says "failed, permanent" for people[1]
        ("mailgun", {"event": "failed", "severity": "permanent", "recipient": people[1].email, "id": "mg-odd-1",
                     "delivery-status": "550 no such user"}),
        ("mailgun", {"event": "failed", "severity": "permanent", "recipient": people[1].email, "id": "mg-odd-2",
                     "delivery-status": ["550"]}),
        # a recipient that is no address at all: recorded, and nobody's status changes
        ("postmark", {"RecordType": "Bounce", "Type": "HardBounce", "ID": 7, "Email": {"address": people[2].email}}),
        ("generic", {"events": [{"id": "g-odd", "type": "hard", "email": [people[2].email]}]}),
    ]
    for source, payload in odd:
        if source == "mailgun":
            answer = client.post("/webhooks/mailgun", json=_mailgun(payload, token=payload["id"]))
        elif source == "postmark":
            answer = client.post("/webhooks/postmark", json=payload, auth=POSTMARK)
        else:
            answer = client.post("/webhooks/generic", json=payload, headers={"authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, f"{source} {payload}: {answer.status_code} {answer.text[:200]}"
    assert status_of(components, people[1]) is SubscriberStatus.BOUNCED
    assert status_of(components, people[2]) is SubscriberStatus.ACTIVE, "a list or an object is nobody's address"
    assert event_count(components) == 4


def test_a_webhook_without_its_secret_is_not_there(tmp_path):
    with serve_app(tmp_path, ENVIRON) as (url, components):
        for path in ("generic", "sendgrid", "mailgun", "postmark", "ses"):
            assert httpx.post(f"{url}/webhooks/{path}", json={}).status_code == 404


# -- SES through SNS

class _CertHost:
    """An https server on 127.0.0.1 (trustme CA) serving the SNS signing certificate and the SubscribeURL."""

    def __init__(self, tmp_path, certificate_pem: bytes):
        self.ca = trustme.CA()
        self.ca_file = tmp_path / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.confirmed: list[str] = []
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.endswith(".pem"):
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(certificate_pem)
                else:
                    host.confirmed.append(self.path)
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"<ConfirmSubscriptionResponse/>")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(context)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _signing_identity():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    return key, certificate.public_bytes(serialization.Encoding.PEM)


def _sns(key, cert_url: str, kind: str, message: str, message_id: str, *, version: str = "1", **extra) -> dict:
    from syndicate.web.webhooks import sns_string_to_sign

    data = {"Type": kind, "MessageId": message_id, "TopicArn": TOPIC, "Message": message,
            "Timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "SignatureVersion": version,
            "SigningCertURL": cert_url, **extra}
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    data["Signature"] = base64.b64encode(key.sign(sns_string_to_sign(data), padding.PKCS1v15(), digest)).decode()
    return data


@pytest.fixture
def ses(tmp_path):
    key, certificate = _signing_identity()
    host = _CertHost(tmp_path, certificate)
    webhooks = {"sns_topic_arns": [TOPIC], "sns_cert_hosts": ["127.0.0.1"], "sns_ca_file": str(host.ca_file)}
    try:
        with serve_app(tmp_path, ENVIRON, bounces={"webhooks": webhooks}) as (url, components):
            people = add_subscribers(components.database, 2)
            with httpx.Client(base_url=url, timeout=10) as client:
                yield client, components, people, key, host
    finally:
        host.close()


def test_ses_through_sns_confirms_its_subscription_and_takes_signed_bounces_and_complaints(ses):
    client, components, people, key, host = ses
    cert_url = f"{host.url}/SimpleNotificationService-test.pem"
    confirm = _sns(key, cert_url, "SubscriptionConfirmation", "You have chosen to subscribe", "sub-1",
                   SubscribeURL=f"{host.url}/?Action=ConfirmSubscription&Token=abc", Token="abc")
    assert client.post("/webhooks/ses", json=confirm).status_code == 200
    assert host.confirmed == ["/?Action=ConfirmSubscription&Token=abc"]

    bounce = json.dumps({"notificationType": "Bounce", "mail": {"source": "digest@news.example"},
                         "bounce": {"bounceType": "Permanent", "bouncedRecipients": [
                             {"emailAddress": people[0].email, "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}})
    signed = _sns(key, cert_url, "Notification", bounce, "msg-1", version="2")
    answer = client.post("/webhooks/ses", json=signed)
    assert answer.status_code == 200 and answer.json()["actions"] == ["bounced"]
    assert status_of(components, people[0]) is SubscriberStatus.BOUNCED
    assert client.post("/webhooks/ses", json=signed).status_code == 403, "replayed"

    complaint = json.dumps({"notificationType": "Complaint", "complaint": {
        "complainedRecipients": [{"emailAddress": people[1].email}], "complaintFeedbackType": "abuse"}})
    assert client.post("/webhooks/ses", json=_sns(key, cert_url, "Notification", complaint, "msg-2")).json()["actions"] == ["unsubscribed"]
    assert status_of(components, people[1]) is SubscriberStatus.UNSUBSCRIBED


def test_ses_forged_signatures_foreign_certificate_hosts_and_unsigned_messages_are_refused(ses):
    client, components, people, key, host = ses
    bounce = json.dumps({"notificationType": "Bounce", "bounce": {"bounceType": "Permanent",
                         "bouncedRecipients": [{"emailAddress": people[0].email, "status": "5.1.1"}]}})
    cert_url = f"{host.url}/SimpleNotificationService-test.pem"
    forger, _ = _signing_identity()
    forged = _sns(forger, cert_url, "Notification", bounce, "msg-9")
    assert client.post("/webhooks/ses", json=forged).status_code == 403, "signed by a key that is not the certificate's"
    elsewhere = _sns(key, "https://evil.example/SimpleNotificationService-x.pem", "Notification", bounce, "msg-10")
    assert client.post("/webhooks/ses", json=elsewhere).status_code == 403, "certificate host not allow-listed"
    plain_http = _sns(key, cert_url.replace("https://", "http://"), "Notification", bounce, "msg-11")
    assert client.post("/webhooks/ses", json=plain_http).status_code == 403
    unsigned = {k: v for k, v in _sns(key, cert_url, "Notification", bounce, "msg-12").items() if k != "Signature"}
    assert client.post("/webhooks/ses", json=unsigned).status_code == 401
    tampered = _sns(key, cert_url, "Notification", bounce, "msg-13")
    tampered["Message"] = tampered["Message"].replace("Permanent", "Transient")
    assert client.post("/webhooks/ses", json=tampered).status_code == 403
    other_topic = _sns(key, cert_url, "Notification", bounce, "msg-14", TopicArn="arn:aws:sns:eu-west-1:1:other")
    assert client.post("/webhooks/ses", json=other_topic).status_code == 403
    assert status_of(components, people[0]) is SubscriberStatus.ACTIVE and event_count(components) == 0


def test_signed_ses_messages_of_another_shape_are_taken_for_what_they_say_never_a_500(ses):
    client, components, people, key, host = ses
    cert_url = f"{host.url}/SimpleNotificationService-test.pem"
    odd = [
        {"notificationType": "Bounce", "bounce": "Permanent"},
        {"notificationType": "Bounce", "bounce": {"bounceType": "Permanent",
                                                  "bouncedRecipients": [people[0].email, {"emailAddress": people[1].email}]}},
        {"notificationType": "Complaint", "complaint": ["abuse"]},
        {"notificationType": "Complaint", "complaint": {"complainedRecipients": "everyone"}},
    ]
    for number, message in enumerate(odd):
        answer = client.post("/webhooks/ses", json=_sns(key, cert_url, "Notification", json.dumps(message), f"odd-{number}"))
        assert answer.status_code == 200, f"{message}: {answer.status_code} {answer.text[:200]}"
    assert status_of(components, people[1]) is SubscriberStatus.BOUNCED, "the one recipient given as SES gives it"
    assert status_of(components, people[0]) is SubscriberStatus.ACTIVE, "a bare string is not a recipient record"
