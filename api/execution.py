"""A faster completion of lists of plain objects, for graphql-core's executor.

A partner page is up to 1,000 objects of a few scalar fields each (both directions: 2,000). The
reference executor completes each field of each object on its own (resolve, complete, serialize:
about 10 us per object), which was most of a warm partner query's time at MICrONS size (18 of
30 ms, bench/bench_load.py). When every field selected on the items of a list is a plain
strawberry attribute of a scalar or enum type (no arguments, no resolver of ours, no directives
left after collection, no @defer/@stream, no middleware), the items are completed here in one
loop that calls the same resolvers and the same ``serialize``; the result is the same dict.

Anything else, and any item that does not complete cleanly (a null in a non-null field, an
exception, an awaitable), goes through the reference executor unchanged, so errors, paths and
null propagation stay exactly graphql-core's. ``tests/api/test_execution.py`` compares both on
the served schema.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    Undefined,
    is_leaf_type,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import AwaitableOrValue, Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

#: a field of the plan: (response key, attribute read or None for __typename, serialize or the
#: constant type name, non-null)
_Step = tuple[str, Callable[..., Any] | None, Any, bool]
_Plan = tuple[tuple[_Step, ...], bool]  # (fields, items non-null)


class _Fallback(Exception):
    """This list takes the reference path."""


def _attribute(field: GraphQLField) -> Callable[[Any], Any] | None:
    """The attribute read of a strawberry field without a resolver function, permission or
    extension (strawberry's ``_get_basic_result`` does ``getattr(source, python_name)``)."""
    if getattr(field.resolve, "__name__", "") != "_get_basic_result":
        return None
    definition = (field.extensions or {}).get("strawberry-definition")
    if (
        definition is None
        or definition.base_resolver is not None
        or definition.default_resolver is not getattr
    ):
        return None
    return operator.attrgetter(definition.python_name)


class ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, with lists of plain objects completed in one loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[tuple[int, int], tuple[_Plan | None, FieldDetailsList]] = {}

    def _plan(
        self, item_type: GraphQLOutputType, field_details_list: FieldDetailsList, path: Path
    ) -> _Plan | None:
        key = (id(item_type), id(field_details_list))
        hit = self._plans.get(key)
        if hit is not None:
            return hit[0]
        plan = self._make_plan(item_type, field_details_list, path)
        self._plans[key] = (plan, field_details_list)  # keeps the list alive: ids stay unique
        return plan

    def _make_plan(
        self, item_type: GraphQLOutputType, field_details_list: FieldDetailsList, path: Path
    ) -> _Plan | None:
        manager = self.middleware_manager
        if manager is not None and manager.middlewares:
            return None
        non_null = isinstance(item_type, GraphQLNonNull)
        obj = item_type.of_type if isinstance(item_type, GraphQLNonNull) else item_type
        if not isinstance(obj, GraphQLObjectType) or obj.is_type_of is not None:
            return None
        if self.get_stream_usage(field_details_list, path) is not None:
            return None
        grouped, new_defer_usages, _ = self.collect_subfields(obj, field_details_list)
        if new_defer_usages:
            return None
        steps: list[_Step] = []
        for response_key, details in grouped.items():
            if any(d.defer_usage is not None for d in details):
                return None
            name = details[0].node.name.value
            if name == "__typename":
                steps.append((response_key, None, obj.name, True))
                continue
            field = obj.fields.get(name)
            read = None if field is None or field.args else _attribute(field)
            if field is None or read is None:
                return None
            typ = field.type
            required = isinstance(typ, GraphQLNonNull)
            leaf = typ.of_type if isinstance(typ, GraphQLNonNull) else typ
            if not is_leaf_type(leaf):
                return None
            steps.append((response_key, read, leaf.serialize, required))
        return tuple(steps), non_null

    def complete_iterable_value(
        self,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo,
        path: Path,
        items: Iterable[Any],
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        if isinstance(items, list) and items:
            plan = self._plan(item_type, field_details_list, path)
            if plan is not None:
                try:
                    return _complete(items, plan, self.is_awaitable)
                except Exception:  # noqa: BLE001 - _Fallback, or an error the reference path raises
                    pass
        return super().complete_iterable_value(
            item_type, field_details_list, info, path, items, position_context
        )


def _complete(items: list[Any], plan: _Plan, is_awaitable: Callable[[Any], bool]) -> list[Any]:
    steps, items_required = plan
    out: list[Any] = []
    append = out.append
    for item in items:
        if item is None:
            if items_required:
                raise _Fallback
            append(None)
            continue
        if is_awaitable(item):
            raise _Fallback
        row: dict[str, Any] = {}
        for key, resolve, serialize, required in steps:
            if resolve is None:  # __typename
                row[key] = serialize
                continue
            value = resolve(item)
            if value is None:
                if required:
                    raise _Fallback
                row[key] = None
                continue
            value = serialize(value)  # an awaitable value does not serialize: fallback
            if value is None or value is Undefined:
                raise _Fallback
            row[key] = value
        append(row)
    return out
