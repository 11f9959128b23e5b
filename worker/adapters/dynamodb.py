"""DynamoDB calls the worker makes on one table; a failed condition is a result, not an error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from worker.adapters.aws_errors import error_code, mapped
from worker.errors import ConfigError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

_CONDITION_FAILED = "ConditionalCheckFailedException"
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


@dataclass(frozen=True)
class Update:
    """The outcome of a conditional update: whether it applied, and the item it saw or left."""

    applied: bool
    item: dict[str, Any] | None


class Table:
    """One table addressed by a string partition key."""

    def __init__(self, client: DynamoDBClient, name: str, *, key: str) -> None:
        self._client = client
        self.name = name
        self._key = key

    async def check(self, option: str) -> None:
        """ConfigError naming `option` unless the table exists with a string key `self._key`."""

        def missing(exc: ClientError, what: str) -> ConfigError | None:
            if error_code(exc) != "ResourceNotFoundException":
                return None
            return ConfigError(option, f"names a table that does not exist: {self.name}")

        with mapped("DescribeTable", missing):
            response = await self._client.describe_table(TableName=self.name)
        table = response["Table"]
        hash_keys = [k["AttributeName"] for k in table["KeySchema"] if k["KeyType"] == "HASH"]
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        if hash_keys != [self._key] or types.get(self._key) != "S" or len(table["KeySchema"]) != 1:
            raise ConfigError(
                option,
                f"table {self.name} must have only a string partition key named {self._key!r}",
            )

    async def update(
        self,
        key: str,
        expression: str,
        *,
        values: Mapping[str, Any] | None = None,
        names: Mapping[str, str] | None = None,
        condition: str | None = None,
        returns: str = "ALL_NEW",
    ) -> Update:
        """UpdateItem; when `condition` fails, `applied` is False and `item` is the current one."""
        request: dict[str, Any] = {
            "TableName": self.name,
            "Key": {self._key: {"S": key}},
            "UpdateExpression": expression,
            "ReturnValues": returns,
        }
        if values:
            request["ExpressionAttributeValues"] = {k: _encode(v) for k, v in values.items()}
        if names:
            request["ExpressionAttributeNames"] = dict(names)
        if condition:
            request["ConditionExpression"] = condition
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        with mapped("UpdateItem"):
            try:
                response = await self._client.update_item(**request)
            except ClientError as exc:
                if error_code(exc) != _CONDITION_FAILED:
                    raise
                # ReturnValuesOnConditionCheckFailure's item: a key botocore's error type lacks.
                current = cast("Mapping[str, Any] | None", exc.response.get("Item"))
                return Update(False, _decode_item(current))
        return Update(True, _decode_item(response.get("Attributes")))

    async def get(self, key: str) -> dict[str, Any] | None:
        """A strongly consistent read of one item (None when absent)."""
        with mapped("GetItem"):
            response = await self._client.get_item(
                TableName=self.name, Key={self._key: {"S": key}}, ConsistentRead=True
            )
        return _decode_item(response.get("Item"))


def _encode(value: Any) -> dict[str, Any]:
    return cast("dict[str, Any]", _serializer.serialize(_decimals(value)))


def _decimals(value: Any) -> Any:
    """boto3's serializer refuses floats (they are inexact): pass them as decimal text."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {k: _decimals(v) for k, v in value.items()}
    return value


def _decode_item(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not raw:
        return None
    return {name: _plain(_deserializer.deserialize(value)) for name, value in raw.items()}


def _plain(value: Any) -> Any:
    """Decimals become int or float; sets and maps are decoded all the way down."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, set):
        return {_plain(v) for v in value}
    return value
