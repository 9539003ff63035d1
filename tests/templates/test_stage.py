"""The template stage on a `RequestContext`, with the real store on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.errors import InvalidRequest, NotFound, Unprocessable
from server.storage.database import Database
from server.storage.migrations import migrate
from server.templates.stage import TemplateStage
from server.templates.store import MIGRATIONS, TemplateStore
from tests.templates.stack import context, system_message, user_message
from tokenwire.chat.v1 import chat_pb2, parameters_pb2
from tokenwire.templates.v1 import templates_pb2

SUPPORT = templates_pb2.Template(
    name="support",
    messages=[
        system_message("You support {{product}} customers. Tone: {{tone}}."),
        user_message("My account id is {{account}}."),
    ],
    variables=[
        templates_pb2.TemplateVariable(name="product"),
        templates_pb2.TemplateVariable(name="tone", default_value="friendly"),
        templates_pb2.TemplateVariable(name="account", default_value="unknown"),
    ],
    model="fake-echo",
    parameters=parameters_pb2.GenerationParameters(temperature=0.2, max_tokens=50, top_p=0.9),
)


@pytest.fixture
async def store(database: Database) -> AsyncIterator[TemplateStore]:
    await migrate(database, MIGRATIONS)
    store = TemplateStore(database)
    await store.create("acme", SUPPORT)
    yield store


def ask(text: str, **fields: object) -> chat_pb2.CreateChatCompletionRequest:
    return chat_pb2.CreateChatCompletionRequest(messages=[user_message(text)], **fields)  # type: ignore[arg-type]


async def test_renders_template_first_then_the_requests_messages(store: TemplateStore) -> None:
    request = ask("Why was I billed twice?", template="support", variables={"product": "Rocket"})
    request.parameters.temperature = 1.5
    ctx = context(request)
    await TemplateStage(store).before(ctx)
    assert [(m.role, m.content_text) for m in ctx.request.messages] == [
        (1, "You support Rocket customers. Tone: friendly."),
        (3, "My account id is unknown."),
        (3, "Why was I billed twice?"),
    ]
    assert ctx.request.parameters.temperature == 1.5  # the request's own wins
    assert (ctx.request.parameters.max_tokens, ctx.request.parameters.top_p) == (
        50,
        0.9,
    )  # defaults fill the rest
    assert ctx.request.model == "fake-echo"
    assert not ctx.request.HasField("template") and not ctx.request.variables
    assert (ctx.template, ctx.template_version) == ("support", 1)


async def test_request_model_wins_over_the_templates(store: TemplateStore) -> None:
    ctx = context(ask("x", template="support", model="other", variables={"product": "P"}))
    await TemplateStage(store).before(ctx)
    assert ctx.request.model == "other"


async def test_by_uuid_and_latest_version(store: TemplateStore) -> None:
    t = await store.update("acme", "support", templates_pb2.Template(description="v2"))
    ctx = context(ask("x", template=t.id, variables={"product": "P"}))
    await TemplateStage(store).before(ctx)
    assert (ctx.template, ctx.template_version) == ("support", 2)


async def test_a_value_is_never_expanded(store: TemplateStore) -> None:
    tricky = {"product": "{{account}} {{ tone }} \\1 $1", "account": "{{product}}"}
    ctx = context(ask("x", template="support", variables=tricky))
    await TemplateStage(store).before(ctx)
    assert ctx.request.messages[0].content_text == (
        "You support {{account}} {{ tone }} \\1 $1 customers. Tone: friendly."
    )
    assert ctx.request.messages[1].content_text == "My account id is {{product}}."


async def test_unknown_template_is_404(store: TemplateStore) -> None:
    with pytest.raises(NotFound) as caught:
        await TemplateStage(store).before(context(ask("x", template="nope")))
    assert caught.value.http_status == 404 and caught.value.param == "template"


async def test_another_organizations_template_is_404(store: TemplateStore) -> None:
    theirs = await store.create(
        "globex", templates_pb2.Template(name="only-globex", messages=[user_message("hi")])
    )
    for ref in (theirs.id, "only-globex"):
        with pytest.raises(NotFound):
            await TemplateStage(store).before(context(ask("x", template=ref)))
    # the same name in two organizations: each gets its own
    await store.create(
        "globex", templates_pb2.Template(name="support", messages=[user_message("GLOBEX")])
    )
    ctx = context(ask("x", template="support"), organization="globex")
    await TemplateStage(store).before(ctx)
    assert ctx.request.messages[0].content_text == "GLOBEX"


async def test_variable_errors_are_422(store: TemplateStore) -> None:
    stage = TemplateStage(store)
    with pytest.raises(Unprocessable) as missing:
        await stage.before(context(ask("x", template="support")))
    assert "'product'" in missing.value.message
    with pytest.raises(Unprocessable) as undeclared:
        await stage.before(
            context(ask("x", template="support", variables={"product": "P", "sku": "1"}))
        )
    assert "'sku'" in undeclared.value.message


async def test_needs_an_organization_and_a_template(store: TemplateStore) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await TemplateStage(store).before(context(ask("x", template="support"), organization=None))
    assert "organization_id" in caught.value.message
    with pytest.raises(InvalidRequest) as caught:
        await TemplateStage(store).before(context(ask("x", variables={"a": "b"})))
    assert caught.value.param == "variables"


async def test_a_request_without_template_is_untouched(store: TemplateStore) -> None:
    request = ask("plain", model="m")
    ctx = context(request)
    await TemplateStage(store).before(ctx)
    assert ctx.request == ask("plain", model="m")
    assert ctx.template is None
