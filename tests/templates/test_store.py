"""The template store on SQLite and on the real PostgreSQL: versions, validation, isolation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.errors import Conflict, InvalidRequest, NotFound
from server.storage.database import Database
from server.storage.migrations import migrate
from server.templates.store import MIGRATIONS, TemplateStore
from tests.templates.stack import system_message, user_message
from tokenwire.chat.v1 import message_pb2, parameters_pb2
from tokenwire.templates.v1 import templates_pb2


@pytest.fixture
async def store(database: Database) -> AsyncIterator[TemplateStore]:
    await migrate(database, MIGRATIONS)
    yield TemplateStore(database)


def greeting(name: str = "greet", **fields: object) -> templates_pb2.Template:
    t = templates_pb2.Template(
        name=name,
        description="Greets someone",
        messages=[system_message("You greet {{who}} in a {{tone}} tone."), user_message("Hi!")],
        variables=[
            templates_pb2.TemplateVariable(name="who"),
            templates_pb2.TemplateVariable(name="tone", default_value="warm"),
        ],
        model="fake-echo",
        parameters=parameters_pb2.GenerationParameters(
            temperature=0.25,
            max_tokens=64,
            stop=["END"],
            seed=2**40,
            response_format=message_pb2.ResponseFormat(
                type=message_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT
            ),
        ),
    )
    t.MergeFrom(templates_pb2.Template(**fields))  # type: ignore[arg-type]
    return t


async def test_create_then_get_by_name_and_by_uuid(store: TemplateStore) -> None:
    created = await store.create("acme", greeting())
    assert created.object == "template" and created.version == 1
    assert created.created_at == created.updated_at > 0
    by_name = await store.get("acme", "greet")
    by_id = await store.get("acme", created.id)
    by_upper_id = await store.get("acme", created.id.upper())
    assert by_name == by_id == by_upper_id == created
    assert created.messages[0].content_text == "You greet {{who}} in a {{tone}} tone."
    assert created.variables[1].default_value == "warm"
    assert not created.variables[0].HasField("default_value")
    p = created.parameters
    assert (p.temperature, p.max_tokens, list(p.stop), p.seed) == (0.25, 64, ["END"], 2**40)
    assert p.response_format.type == message_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT


async def test_names_are_unique_within_an_organization_only(store: TemplateStore) -> None:
    a = await store.create("acme", greeting())
    with pytest.raises(Conflict) as caught:
        await store.create("acme", greeting())
    assert caught.value.http_status == 409
    b = await store.create("globex", greeting(description="globex's own"))
    assert a.id != b.id
    assert (await store.get("acme", "greet")).id == a.id
    assert (await store.get("globex", "greet")).description == "globex's own"


async def test_another_organizations_template_is_never_found(store: TemplateStore) -> None:
    theirs = await store.create("globex", greeting("secret"))
    for ref in (theirs.id, theirs.id.upper(), "secret"):
        with pytest.raises(NotFound):
            await store.get("acme", ref)
        with pytest.raises(NotFound):
            await store.update("acme", ref, templates_pb2.Template(description="mine now"))
        with pytest.raises(NotFound):
            await store.delete("acme", ref)
    assert (await store.page("acme")) == ([], False)
    still = await store.get("globex", theirs.id)
    assert still == theirs


async def test_update_writes_a_new_version_and_keeps_the_old(store: TemplateStore) -> None:
    first = await store.create("acme", greeting())
    changes = templates_pb2.Template(messages=[user_message("Yo {{who}}")], model="")
    second = await store.update("acme", "greet", changes)
    assert (second.id, second.version) == (first.id, 2)
    assert [m.content_text for m in second.messages] == ["Yo {{who}}"]
    assert not second.HasField("model")
    assert second.description == first.description  # unset: carried over
    assert second.parameters == first.parameters
    assert len(second.variables) == 2
    assert await store.get("acme", first.id) == second
    assert await store.get("acme", "greet", version=1) == first
    with pytest.raises(NotFound):
        await store.get("acme", "greet", version=3)


async def test_update_clears_defaults_and_renames(store: TemplateStore) -> None:
    await store.create("acme", greeting())
    await store.create("acme", greeting("taken"))
    changes = templates_pb2.Template(name="renamed")
    changes.parameters.SetInParent()
    renamed = await store.update("acme", "greet", changes)
    assert renamed.name == "renamed" and renamed.version == 2
    assert not renamed.parameters.ListFields()
    with pytest.raises(NotFound):
        await store.get("acme", "greet")
    with pytest.raises(Conflict):
        await store.update("acme", "renamed", templates_pb2.Template(name="taken"))
    assert (await store.get("acme", "renamed")).version == 2  # the refused update left no trace


async def test_update_mask_writes_exactly_the_fields_it_names(store: TemplateStore) -> None:
    first = await store.create("acme", greeting())
    changes = templates_pb2.Template(
        messages=[user_message("Hello there")], description="ignored: not in the mask"
    )
    second = await store.update("acme", "greet", changes, ("messages", "variables", "model"))
    assert [m.content_text for m in second.messages] == ["Hello there"]
    assert len(second.variables) == 0  # named and empty: emptied, which no unmasked update can
    assert not second.HasField("model")  # named and unset: cleared
    assert second.description == first.description and second.parameters == first.parameters
    with pytest.raises(InvalidRequest) as caught:
        await store.update("acme", "greet", changes, ("id",))
    assert caught.value.param == "update_mask"


async def test_invalid_update_leaves_the_template_alone(store: TemplateStore) -> None:
    await store.create("acme", greeting())
    bad = templates_pb2.Template(messages=[user_message("{{undeclared}}")])
    with pytest.raises(InvalidRequest):
        await store.update("acme", "greet", bad)
    assert (await store.get("acme", "greet")).version == 1


async def test_delete_removes_every_version(store: TemplateStore, database: Database) -> None:
    t = await store.create("acme", greeting())
    await store.update("acme", "greet", templates_pb2.Template(description="v2"))
    assert await store.delete("acme", "greet") == t.id
    with pytest.raises(NotFound):
        await store.get("acme", t.id, version=1)
    left = await database.fetch("SELECT version FROM template_versions WHERE template_id = ?", t.id)
    assert left == []
    await store.create("acme", greeting())  # the name is free again


async def test_pages_by_name(store: TemplateStore) -> None:
    for name in ("c", "a", "b"):
        await store.create("acme", greeting(name))
    await store.create("globex", greeting("aa"))
    page, more = await store.page("acme", limit=2)
    assert [t.name for t in page] == ["a", "b"] and more
    page, more = await store.page("acme", limit=2, after="b")
    assert [t.name for t in page] == ["c"] and not more


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"name": ""}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "7d4b3f2e-1c0a-4e5b-9a8f-0123456789ab"}, "name"),
        ({"messages": [user_message("{{nope}}")]}, "variables"),
        ({"variables": [templates_pb2.TemplateVariable(name="1bad")]}, "variables[0].name"),
        (
            {"variables": [templates_pb2.TemplateVariable(name="x")] * 2},
            "variables[1].name",
        ),
        ({"messages": [message_pb2.ChatMessage(content_text="no role")]}, "messages[0].role"),
        ({"messages": []}, "messages"),
        ({"parameters": parameters_pb2.GenerationParameters(temperature=3)}, None),
        (
            {"parameters": parameters_pb2.GenerationParameters(tools=[message_pb2.Tool()])},
            "parameters.tools[0].function.name",
        ),
    ],
)
async def test_invalid_templates_are_refused_by_field(
    store: TemplateStore, changes: dict[str, object], param: str | None
) -> None:
    t = greeting()
    for name, value in changes.items():
        t.ClearField(name)  # type: ignore[arg-type]
        if isinstance(value, list):
            getattr(t, name).extend(value)
        elif isinstance(value, str):
            setattr(t, name, value)
        else:
            getattr(t, name).CopyFrom(value)
    with pytest.raises(InvalidRequest) as caught:
        await store.create("acme", t)
    assert caught.value.param == (param or "parameters.temperature")
