"""The pipeline stage expanding a chat request's `template` (Mesh's templates).

For a request naming a template (by name or UUID, in the caller's organization):

1. the template's latest version is loaded (unknown: 404);
2. `variables` are bound to its declared variables: an undeclared one or a
   required one missing is a 422 naming it;
3. its messages are rendered by literal substitution and put first, the
   request's own messages after them;
4. its default parameters fill what the request left unset (the request's
   own parameters win), and its model applies when the request names none
   (then the key's default and the server's, as routing decides);
5. `template` and `variables` are cleared, so later stages and providers see
   an ordinary request, and the name and version go to the usage record.
"""

from __future__ import annotations

from server.errors import InvalidRequest
from server.pipeline.context import RequestContext, UsageRecord
from server.rpc.access import organization_of
from server.templates import defaults, slots
from server.templates.store import Template, TemplateStore
from tokenwire.chat.v1 import chat_pb2


class TemplateStage:
    span_name = "template expand"  # traced: its `before` runs in a span of this name

    def __init__(self, store: TemplateStore) -> None:
        self._store = store

    async def before(self, ctx: RequestContext) -> None:
        request = ctx.request
        if not request.HasField("template"):
            if request.variables:
                raise InvalidRequest("'variables' needs a 'template'.", param="variables")
            return
        organization = organization_of(ctx.principal)
        template = await self._store.get(organization, request.template)
        expand(request, template)
        ctx.template, ctx.template_version = template.name, template.version

    async def after(self, ctx: RequestContext, record: UsageRecord) -> None:
        pass


def expand(request: chat_pb2.CreateChatCompletionRequest, template: Template) -> None:
    """Rewrite `request` as `template` filled with the request's `variables`."""
    values = slots.bind(template, dict(request.variables))
    own = list(request.messages)
    del request.messages[:]
    request.messages.extend(slots.render(m, values) for m in template.messages)
    request.messages.extend(own)
    defaults.apply(request.parameters, template.parameters)
    if not request.model and template.HasField("model"):
        request.model = template.model
    request.ClearField("template")
    request.ClearField("variables")
