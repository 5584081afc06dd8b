"""Python client of the ko-sts similarity service: the same calls over HTTP and gRPC.

    from ko_sts import GrpcClient, HttpClient

``ko_sts.v1`` holds the gRPC code generated from ``proto/ko_sts/v1/similarity.proto``.
Needs ``httpx`` (HTTP), or ``grpcio`` and ``protobuf`` (gRPC).
"""

from ko_sts.client import (
    GrpcClient,
    HttpClient,
    KoStsError,
    ModelInfo,
    PairScore,
    RankedCandidate,
    RankResult,
    Retry,
    ScoreResult,
)

__all__ = [
    "GrpcClient",
    "HttpClient",
    "KoStsError",
    "ModelInfo",
    "PairScore",
    "RankResult",
    "RankedCandidate",
    "Retry",
    "ScoreResult",
]
