"""Request and response bodies of the HTTP API (they are also the OpenAPI schema at /docs).

Requests are strict: ``"k": "10"`` or ``"rerank": "yes"`` is a type error, not a guess, and
unknown fields are rejected so a typo (``top_k`` for ``top_n``) does not pass silently.
Ranges depend on the deployment's config, so they are checked in the ingress, not here, and
``openapi.py`` writes them into the schema the deployment serves.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _integral(value: Any) -> Any:
    """JSON has numbers, not ints and floats: ``2.0`` is the integer 2 (JSON Schema agrees), so it is
    one here too; ``2.5``, ``"2"`` and ``true`` still fail the strict int check."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Count = Annotated[int, BeforeValidator(_integral)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ChatMessage(_Strict):
    """One OpenAI-style chat message; ``system`` messages are accepted and ignored."""
    role: Literal["system", "user", "assistant"]
    content: str
    name: str | None = Field(None, description="accepted for OpenAI compatibility; ignored")


class SearchRequest(_Strict):
    query: str | None = Field(None, description="natural-language query; give this or messages")
    messages: list[ChatMessage] | None = Field(
        None, description="a chat history (oldest first, the last non-system message the user's): searched "
                          "with the conversational query encoder, formatted as it was trained; give this or query")
    k: Count | None = Field(None, description="passages to return (default from config)")
    rerank: bool = Field(False, description="re-score the top rerank_k candidates with the reranker")
    rerank_k: Count | None = Field(None, description="candidates to rerank (default from config)")
    rerank_interpolate: float | None = Field(
        None, description="with rerank: order the reranked candidates by w * minmax(reranker) + "
                          "(1 - w) * minmax(retriever) (evaluate's rerank_interpolate); unset: reranker alone")


class SearchHit(BaseModel):
    rank: int
    id: str
    score: float = Field(description="the score the results are ordered by (see stage)")
    stage: Literal["retriever", "reranker", "interpolated"] = Field(description="which stage produced score")
    retriever_score: float
    title: str
    text: str


class SearchResponse(BaseModel):
    query: str = Field(description="the text that was searched (for messages: the formatted conversation)")
    k: int
    reranked: bool
    model: str
    reranker: str | None
    results: list[SearchHit]


class EmbeddingsRequest(_Strict):
    """OpenAI's embeddings request. Token-id inputs are not supported."""
    input: Union[str, list[str]]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Count | None = Field(None, description="must equal the model's dimension if given")
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[list[float], str] = Field(description="floats, or base64 of little-endian float32")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class RerankDocument(_Strict):
    text: str


class RerankRequest(_Strict):
    """Cohere / Jina rerank request."""
    query: str
    documents: list[Union[str, RerankDocument]]
    model: str | None = None
    top_n: Count | None = Field(None, description="results to return (default: all documents)")
    return_documents: bool = False


class RerankResult(BaseModel):
    index: int = Field(description="position of the document in the request")
    relevance_score: float = Field(description="the reranker's raw score (logit / log-odds); higher is better")
    document: RerankDocument | None = None


class RerankResponse(BaseModel):
    model: str
    results: list[RerankResult]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "rayrag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    retriever: dict[str, Any] | None = Field(
        None, description="authenticated callers only: state, model, error, and `serve`: the deployment's "
                          "status and replica counts by state as the Serve controller sees them")
    reranker: dict[str, Any] | None = Field(None, description="as retriever, when a reranker is configured")


class ErrorDetail(BaseModel):
    message: str
    type: Literal["invalid_request_error", "authentication_error", "service_unavailable", "server_error"]
    param: str | None = Field(description="the request field at fault, e.g. messages[2].content")
    code: str | None = Field(description="what went wrong, e.g. too_long, model_not_found, overloaded")


class ErrorBody(BaseModel):
    """Every error answer: OpenAI's shape."""
    error: ErrorDetail
