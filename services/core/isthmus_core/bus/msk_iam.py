"""SASL/OAUTHBEARER tokens for Amazon MSK's IAM authentication (``kafka_sasl_mechanism = AWS_MSK_IAM``)."""

from __future__ import annotations

import asyncio
import time

from aiokafka.abc import AbstractTokenProvider

from isthmus_core.errors import Unavailable

#: a new token is signed this long before the current one expires (MSK tokens live 15 minutes)
TOKEN_REFRESH_MARGIN_S = 60.0


class MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """SASL/OAUTHBEARER tokens for Amazon MSK's IAM auth, signed with the default AWS credential chain
    (environment, web identity / IRSA, instance profile). A token is reused until shortly before it expires;
    signing runs in a worker thread (botocore may read files or call STS)."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token is not None and time.time() < self._expires_at - TOKEN_REFRESH_MARGIN_S:
                return self._token
            token, self._expires_at = await asyncio.to_thread(self._sign)
            self._token = token
            return token

    def _sign(self) -> tuple[str, float]:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # boto3 only when MSK IAM is configured

        try:
            token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(self.region)
        except Exception as exc:  # botocore raises many unrelated types for missing/invalid credentials
            raise Unavailable(
                f"cannot sign an MSK IAM token for region {self.region}: {type(exc).__name__}: {exc} "
                "(are AWS credentials available, e.g. the service account's IAM role?)"
            ) from exc
        return str(token), float(expiry_ms) / 1000.0
