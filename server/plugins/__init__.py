"""OpenRouter's plugins (the request's `plugins`; README's "Plugins" documents each).

- `requested`: which plugins a request asks for (unknown ids refused, `:online` read);
- `stage`: the pipeline stage that runs them, last before routing;
- `backend`: the HTTP service a plugin calls (one pooled session, errors translated);
- `moderation`: the input checked by an OpenAI-compatible `/v1/moderations` first;
- `web` (and `model: "x:online"`): search results in the prompt, `url_citation`s in the
  answer; `search`: the SearxNG, Brave and Tavily API shapes it searches with;
- `files` (`file-parser`): PDF parts into text (pypdf, or `ocr`: Mistral's OCR service),
  or left for upstreams that read files;
- `auto_router` (`auto-router`, `model: "auto"`): the cheapest model that fits and serves;
- `healing` (`response-healing`): a JSON answer repaired and checked against its schema.
"""
