"""Stored prompt templates: `{{slot}}` placeholders filled from a chat request's `variables`.

store       templates and their versions on `Database` (SQLite or PostgreSQL)
validate    what a template must be before it is written
slots       finding placeholders and rendering them by literal substitution
defaults    a template's default parameters under a request's own
service     the `TemplateService` gRPC servicer (REST under /v1/templates)
stage       the pipeline `Stage` that expands `template` in a chat request
"""
