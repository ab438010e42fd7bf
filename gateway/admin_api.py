"""The operators' API (admin scope): audit search and export, usage reports."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, stream_with_context

from gateway import audit, reports
from gateway.auth import Scope, guard, requires
from gateway.services import services

bp = Blueprint("admin", __name__, url_prefix="/v1")
guard(bp)


@bp.get("/audit")
@requires(Scope.ADMIN)
def audit_search() -> Response:
    """Audit records newest first, filtered, one page at a time."""
    page = audit.search(services(), audit.parse_filters(request.args))
    return jsonify(records=page.records, next_cursor=page.next_cursor)


@bp.get("/audit.csv")
@requires(Scope.ADMIN)
def audit_csv() -> Response:
    """Every matching audit record as CSV (streamed), safe to open in a spreadsheet."""
    filters = audit.parse_filters(request.args, paged=False)  # validated before the first byte
    lines = audit.csv_lines(audit.iterate(services(), filters))
    return Response(
        stream_with_context(lines), mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )


@bp.get("/reports/usage")
@requires(Scope.ADMIN)
def usage_report() -> Response:
    """Verifications by day, country or channel from the day counters (no stream scan)."""
    return jsonify(reports.usage(services(), reports.parse_query(request.args)))
