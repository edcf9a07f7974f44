"""Kafka connection security: TLS, SASL (PLAIN, SCRAM-SHA-256/512) and AWS MSK IAM.

Settings checks and client options need no broker. Against a real Apache Kafka broker with a SASL_SSL
listener (the ``kafka_secure`` session fixture: ``tests/infra/kafka.sh up --secure``, a throwaway CA and
SCRAM users), the bus conformance suite runs unchanged over TLS + SCRAM-SHA-512, every mechanism
connects, the operator tools read and re-drive, and refused credentials, an untrusted certificate and a
plaintext client each fail with an error that says which.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from isthmus_core.bus.kafka import KafkaBus
from isthmus_core.bus.kafka_security import KafkaSecurity
from isthmus_core.bus.kafka_tools import read_topic, republish
from isthmus_core.bus.port import EventBus, Message, Subscription
from isthmus_core.contracts.events import TenantDeleted
from isthmus_core.contracts.topics import TopicSpec
from isthmus_core.errors import ConfigurationError, Unavailable
from isthmus_core.settings import CommonSettings, load_all, masked
from isthmus_core.testing.bus_conformance import BusConformance
from isthmus_core.testing.infra import SecureKafka

# --- settings and client options (no broker) ----------------------------------------------------------


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol() -> None:
    assert KafkaSecurity().problems() == []
    assert KafkaSecurity().client_options() == {"security_protocol": "PLAINTEXT"}
    assert KafkaSecurity().describe() == "PLAINTEXT"


def test_every_inconsistency_is_reported_at_once() -> None:
    problems = KafkaSecurity(
        "PLAINTEXT", ssl_cafile=Path("/ca.pem"), ssl_keyfile=Path("/k.pem"), sasl_mechanism="PLAIN"
    ).problems()
    assert len(problems) == 3, problems
    assert any("kafka_ssl_cafile, kafka_ssl_keyfile need kafka_security_protocol SSL" in p for p in problems)
    assert any("kafka_ssl_keyfile needs kafka_ssl_certfile" in p for p in problems)
    assert any("kafka_sasl_mechanism PLAIN needs kafka_security_protocol SASL_*" in p for p in problems)


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        (KafkaSecurity("SASL_SSL"), "needs kafka_sasl_mechanism"),
        (KafkaSecurity("SASL_SSL", sasl_mechanism="SCRAM-SHA-512"), "needs kafka_sasl_username"),
        (
            KafkaSecurity("SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="u"),
            "needs kafka_sasl_password",
        ),
        (KafkaSecurity("SASL_SSL", sasl_mechanism="AWS_MSK_IAM"), "needs kafka_aws_region"),
        (
            KafkaSecurity("SASL_PLAINTEXT", sasl_mechanism="AWS_MSK_IAM", aws_region="eu-west-1"),
            "AWS_MSK_IAM needs kafka_security_protocol SASL_SSL",
        ),
    ],
)
def test_sasl_needs_its_parts(security: KafkaSecurity, expected: str) -> None:
    assert any(expected in p for p in security.problems()), security.problems()
    with pytest.raises(ConfigurationError, match=expected):
        security.client_options()


def test_scram_options_carry_the_credentials_and_a_verifying_tls_context(tmp_path: Path) -> None:
    security = KafkaSecurity(
        "SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="u", sasl_password="pw"
    )
    options = security.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-256",
        "u",
        "pw",
    )
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert "pw" not in repr(security) and security.describe() == "SASL_SSL/SCRAM-SHA-256 as 'u'"


def test_a_missing_or_unreadable_tls_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"kafka_ssl_cafile .*missing\.pem does not exist"):
        KafkaSecurity("SSL", ssl_cafile=tmp_path / "missing.pem").client_options()
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match=r"cannot load the Kafka TLS files \(.*ca\.pem\)"):
        KafkaSecurity("SSL", ssl_cafile=garbage).client_options()


def test_settings_validate_together_and_mask_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISTHMUS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("ISTHMUS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    with pytest.raises(ConfigurationError) as info:
        load_all([CommonSettings])
    message = str(info.value)
    assert "[common] kafka_sasl_mechanism SCRAM-SHA-512 needs kafka_sasl_username" in message
    assert "needs kafka_sasl_password" in message
    monkeypatch.setenv("ISTHMUS_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("ISTHMUS_KAFKA_SASL_PASSWORD", "s3cret")
    common = load_all([CommonSettings])["common"]
    assert isinstance(common, CommonSettings)
    assert common.kafka_security() == KafkaSecurity(
        "SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="svc", sasl_password="s3cret"
    )
    printed = masked(common)
    assert printed["kafka_sasl_password"] == "********" and "s3cret" not in str(printed)


def test_a_bad_setting_fails_when_the_bus_is_made_not_at_first_use() -> None:
    with pytest.raises(ConfigurationError, match="needs kafka_sasl_mechanism"):
        KafkaBus("127.0.0.1:1", security=KafkaSecurity("SASL_SSL"))


def test_the_in_process_bus_ignores_kafka_security(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISTHMUS_BUS", "inprocess")
    monkeypatch.setenv("ISTHMUS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    common = load_all([CommonSettings])["common"]  # an incomplete SASL setting is not an error here
    assert isinstance(common, CommonSettings) and common.kafka_security_protocol == "SASL_SSL"


async def test_an_unreachable_broker_names_the_cause_and_a_bad_address_keeps_the_original_error() -> None:
    from aiokafka.errors import KafkaConnectionError

    from isthmus_core.bus.kafka import unreachable

    original = KafkaConnectionError("Unable to bootstrap")
    refused = await unreachable("cannot connect", "127.0.0.1:1", KafkaSecurity(), {}, original)
    assert "cannot connect on Kafka at 127.0.0.1:1 (PLAINTEXT): " in str(refused)
    assert "Unable to bootstrap" not in str(refused)  # the probe's own error (connection refused) instead
    no_port = await unreachable("cannot connect", "kafka.data", KafkaSecurity(), {}, original)
    assert str(no_port).endswith(repr(original))


async def test_msk_iam_signs_a_real_token_and_reuses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # the real signer (aws-msk-iam-sasl-signer-python) with static credentials: SigV4 needs no network
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAISTHMUSTEST00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "isthmus-test-secret-key")
    options = KafkaSecurity("SASL_SSL", sasl_mechanism="AWS_MSK_IAM", aws_region="eu-west-1").client_options()
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    provider = options["sasl_oauth_token_provider"]
    token = await provider.token()
    url = urlparse(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    query = parse_qs(url.query)
    assert url.hostname == "kafka.eu-west-1.amazonaws.com"
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Credential"][0].startswith("AKIAISTHMUSTEST00000/")
    assert "X-Amz-Signature" in query
    assert await provider.token() == token  # reused until shortly before it expires
    provider._expires_at = time.time()  # expired: a new token is signed
    assert await provider.token() != "" and provider._expires_at > time.time()


async def test_msk_iam_without_credentials_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    options = KafkaSecurity("SASL_SSL", sasl_mechanism="AWS_MSK_IAM", aws_region="eu-west-1").client_options()
    with pytest.raises(Unavailable, match="cannot sign an MSK IAM token for region eu-west-1"):
        await options["sasl_oauth_token_provider"].token()


# --- against a real broker with a SASL_SSL listener ---------------------------------------------------


def scram512(kafka: SecureKafka, **changes: object) -> KafkaSecurity:
    values: dict[str, object] = {
        "protocol": "SASL_SSL",
        "ssl_cafile": kafka.cafile,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": kafka.username,
        "sasl_password": kafka.password,
    }
    values.update(changes)
    return KafkaSecurity(**values)  # type: ignore[arg-type]


@pytest.mark.kafka
class TestKafkaBusOverSaslSslConformance(BusConformance):
    """The whole bus conformance suite, unchanged, over TLS + SCRAM-SHA-512."""

    timeout_s = 60.0
    quiet_s = 1.0

    @pytest.fixture
    async def bus(self, kafka_secure: SecureKafka) -> AsyncIterator[EventBus]:
        bus = KafkaBus(
            kafka_secure.bootstrap, client_id="isthmus-tls", partitions=2, security=scram512(kafka_secure)
        )
        yield bus
        await bus.stop()


async def _round_trip(bootstrap: str, security: KafkaSecurity, topic: str) -> list[bytes]:
    """Create a topic, publish one message and consume it, all through ``security``."""
    bus = KafkaBus(bootstrap, client_id="isthmus-tls", partitions=1, security=security)
    seen: list[bytes] = []
    arrived = asyncio.Event()

    async def handler(message: Message) -> None:
        seen.append(message.value)
        arrived.set()

    try:
        await bus.ensure_topics([TopicSpec(topic, TenantDeleted, "tenant_id", partitions=1)])
        bus.subscribe(Subscription(topic, "g-" + topic, handler))
        await bus.start()
        await bus.publish(topic, "k", b"over " + security.describe().encode())
        await asyncio.wait_for(arrived.wait(), 60.0)
    finally:
        await bus.stop()
    return seen


@pytest.mark.kafka
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
async def test_other_sasl_mechanisms_connect(kafka_secure: SecureKafka, mechanism: str) -> None:
    topic = f"isthmus.sec-{mechanism.lower()}.created.v1"
    values = await _round_trip(
        kafka_secure.bootstrap, scram512(kafka_secure, sasl_mechanism=mechanism), topic
    )
    assert values == [f"over SASL_SSL/{mechanism} as 'isthmus'".encode()]


@pytest.mark.kafka
async def test_operator_tools_read_and_redrive_over_tls(kafka_secure: SecureKafka) -> None:
    security = scram512(kafka_secure)
    topic = "isthmus.sec-tools.created.v1"
    assert await _round_trip(kafka_secure.bootstrap, security, topic) == [
        b"over SASL_SSL/SCRAM-SHA-512 as 'isthmus'"
    ]
    messages, _ = await read_topic(kafka_secure.bootstrap, topic, security=security)
    assert [m.value for m in messages] == [b"over SASL_SSL/SCRAM-SHA-512 as 'isthmus'"]
    assert await republish(kafka_secure.bootstrap, messages, lambda m: topic, security=security) == 1
    again, _ = await read_topic(kafka_secure.bootstrap, topic, security=security)
    assert [m.value for m in again] == [m.value for m in messages] * 2


@pytest.mark.kafka
async def test_refused_credentials_are_named(kafka_secure: SecureKafka) -> None:
    bus = KafkaBus(kafka_secure.bootstrap, security=scram512(kafka_secure, sasl_password="wrong"))
    with pytest.raises(Unavailable) as info:
        await bus.start()
    message = str(info.value)
    assert f"Kafka at {kafka_secure.bootstrap} (SASL_SSL/SCRAM-SHA-512 as 'isthmus')" in message
    assert "invalid credentials" in message and "wrong" not in message
    await bus.stop()


@pytest.mark.kafka
async def test_an_untrusted_broker_certificate_is_named(kafka_secure: SecureKafka) -> None:
    # without the test CA the system's CAs are used: they did not sign the broker's certificate
    with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await read_topic(
            kafka_secure.bootstrap, "isthmus.any.v1", security=scram512(kafka_secure, ssl_cafile=None)
        )


@pytest.mark.kafka
async def test_a_plaintext_client_on_the_tls_listener_fails_clearly(kafka_secure: SecureKafka) -> None:
    bus = KafkaBus(kafka_secure.bootstrap)
    with pytest.raises(
        Unavailable, match=rf"cannot connect on Kafka at {kafka_secure.bootstrap} \(PLAINTEXT\)"
    ):
        await bus.start()
    await bus.stop()


@pytest.mark.kafka
async def test_the_runtime_bus_uses_the_settings(
    kafka_secure: SecureKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    from isthmus_core.runtime.runtime import make_bus

    monkeypatch.setenv("ISTHMUS_KAFKA_BOOTSTRAP_SERVERS", kafka_secure.bootstrap)
    monkeypatch.setenv("ISTHMUS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("ISTHMUS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("ISTHMUS_KAFKA_SASL_USERNAME", kafka_secure.username)
    monkeypatch.setenv("ISTHMUS_KAFKA_SASL_PASSWORD", kafka_secure.password)
    monkeypatch.setenv("ISTHMUS_KAFKA_SSL_CAFILE", str(kafka_secure.cafile))
    common = load_all([CommonSettings])["common"]
    assert isinstance(common, CommonSettings)
    bus = make_bus(common, all_in_one=False)
    assert isinstance(bus, KafkaBus) and bus.security == scram512(kafka_secure)
    await bus.start()  # a real SASL_SSL connection with the settings' credentials
    await bus.stop()
