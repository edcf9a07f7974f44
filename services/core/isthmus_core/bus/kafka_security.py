"""How Isthmus's Kafka clients authenticate and encrypt: TLS, SASL PLAIN / SCRAM, and AWS MSK IAM.

:class:`KafkaSecurity` is a plain value (read from ``[common]`` settings once, at start) that turns into the
keyword arguments every aiokafka client takes (:meth:`KafkaSecurity.client_options`): the bus's producer,
consumers and admin client, and the ``isthmus dlq`` / ``isthmus reindex`` tools, so they all connect alike.

* ``PLAINTEXT`` (the default): no TLS, no authentication — a local broker.
* ``SSL``: TLS; the brokers' certificates are checked against ``ssl_cafile`` (else the system's CAs), host
  names included; ``ssl_certfile`` / ``ssl_keyfile`` add a client certificate (mutual TLS).
* ``SASL_SSL`` / ``SASL_PLAINTEXT``: SASL over TLS / without it, with ``PLAIN``, ``SCRAM-SHA-256`` or
  ``SCRAM-SHA-512`` (user name and password; the password comes from a Secret) or ``AWS_MSK_IAM``
  (SASL/OAUTHBEARER with a SigV4-signed token from the pod's AWS credentials — on EKS its IRSA role —
  made by ``aws-msk-iam-sasl-signer-python``; MSK's IAM listener is on port 9098).

This module is a plain value (settings validate with it): aiokafka and the AWS signer are imported only
when a client is built.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from isthmus_core.errors import ConfigurationError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "AWS_MSK_IAM"]
SASL_MECHANISMS: tuple[str, ...] = get_args(SaslMechanism)


@dataclass(frozen=True)
class KafkaSecurity:
    """Connection security shared by every Kafka client of a process (see the module docstring)."""

    protocol: SecurityProtocol = "PLAINTEXT"
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    aws_region: str | None = None

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_SSL", "SASL_PLAINTEXT")

    def problems(self) -> list[str]:
        """Every inconsistency at once (empty = usable); files are read by :meth:`client_options`."""
        out: list[str] = []
        files = {
            "kafka_ssl_cafile": self.ssl_cafile,
            "kafka_ssl_certfile": self.ssl_certfile,
            "kafka_ssl_keyfile": self.ssl_keyfile,
        }
        given = [name for name, value in files.items() if value is not None]
        if given and not self.uses_tls:
            out.append(
                f"{', '.join(given)} need kafka_security_protocol SSL or SASL_SSL, not {self.protocol}"
            )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            out.append("kafka_ssl_keyfile needs kafka_ssl_certfile (the client certificate it belongs to)")
        mechanism = self.sasl_mechanism
        if not self.uses_sasl:
            if mechanism is not None:
                out.append(f"kafka_sasl_mechanism {mechanism} needs kafka_security_protocol SASL_*")
        elif mechanism is None:
            mechanisms = ", ".join(SASL_MECHANISMS)
            out.append(f"kafka_security_protocol {self.protocol} needs kafka_sasl_mechanism ({mechanisms})")
        elif mechanism == "AWS_MSK_IAM":
            if self.protocol != "SASL_SSL":
                out.append(
                    "kafka_sasl_mechanism AWS_MSK_IAM needs kafka_security_protocol SASL_SSL (MSK IAM is TLS)"
                )
            if not self.aws_region:
                out.append(
                    "kafka_sasl_mechanism AWS_MSK_IAM needs kafka_aws_region (the MSK cluster's region)"
                )
        else:
            if not self.sasl_username:
                out.append(f"kafka_sasl_mechanism {mechanism} needs kafka_sasl_username")
            if not self.sasl_password:
                out.append(f"kafka_sasl_mechanism {mechanism} needs kafka_sasl_password (from a Secret)")
        return out

    def describe(self) -> str:
        """What error messages say about how the client connected (never the password)."""
        if not self.uses_sasl:
            return self.protocol
        who = (
            f" as {self.sasl_username!r}"
            if self.sasl_username and self.sasl_mechanism != "AWS_MSK_IAM"
            else ""
        )
        return f"{self.protocol}/{self.sasl_mechanism}{who}"

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer`` / ``AIOKafkaConsumer`` / ``AIOKafkaAdminClient``.

        Raises :class:`ConfigurationError` listing every problem, or naming a TLS file that cannot be read."""
        problems = self.problems()
        if problems:
            raise ConfigurationError("Kafka security settings: " + "; ".join(problems))
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = self._ssl_context()
        if self.uses_sasl:
            assert self.sasl_mechanism is not None
            if self.sasl_mechanism == "AWS_MSK_IAM":
                from isthmus_core.bus.msk_iam import MskIamTokenProvider

                assert self.aws_region is not None
                options["sasl_mechanism"] = "OAUTHBEARER"
                options["sasl_oauth_token_provider"] = MskIamTokenProvider(self.aws_region)
            else:
                options["sasl_mechanism"] = self.sasl_mechanism
                options["sasl_plain_username"] = self.sasl_username
                options["sasl_plain_password"] = self.sasl_password
        return options

    def _ssl_context(self) -> ssl.SSLContext:
        from aiokafka.helpers import create_ssl_context

        for name, path in (
            ("kafka_ssl_cafile", self.ssl_cafile),
            ("kafka_ssl_certfile", self.ssl_certfile),
            ("kafka_ssl_keyfile", self.ssl_keyfile),
        ):
            if path is not None and not path.is_file():
                raise ConfigurationError(f"{name} {path} does not exist or is not a file")
        try:
            context: ssl.SSLContext = create_ssl_context(
                cafile=self.ssl_cafile,
                certfile=self.ssl_certfile,
                keyfile=self.ssl_keyfile,
                password=self.ssl_key_password,
            )
            return context
        except (ssl.SSLError, OSError, ValueError) as exc:
            files = ", ".join(str(p) for p in (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile) if p)
            raise ConfigurationError(
                f"cannot load the Kafka TLS files ({files or 'system CAs'}): {exc}"
            ) from exc
