"""Python client of the ko-sts similarity service: the same calls over HTTP and gRPC, sync and asyncio.

    from ko_sts import AsyncGrpcClient, AsyncHttpClient, GrpcClient, HttpClient

Installed as the ``ko-sts-client`` distribution (``client/pyproject.toml``): needs ``httpx``
(sync HTTP), ``aiohttp`` (asyncio HTTP), ``grpcio`` and ``protobuf``, nothing of the server.
``ko_sts.v1`` holds the gRPC code generated from ``proto/ko_sts/v1/similarity.proto`` (in the
installed package: ``ko_sts/v1/similarity.proto``).
"""

from ko_sts.aio import AsyncGrpcClient, AsyncHttpClient
from ko_sts.client import GrpcClient, HttpClient
from ko_sts.protocol import (
    KoStsError,
    ModelInfo,
    PairScore,
    RankedCandidate,
    RankResult,
    Retry,
    ScoreResult,
)

__version__ = "0.1.0"  # the ko-sts-client distribution's version (client/pyproject.toml reads it here)

__all__ = [
    "AsyncGrpcClient",
    "AsyncHttpClient",
    "GrpcClient",
    "HttpClient",
    "KoStsError",
    "ModelInfo",
    "PairScore",
    "RankResult",
    "RankedCandidate",
    "Retry",
    "ScoreResult",
    "__version__",
]
