// The dashboard's charts: Plotly (served by the gateway from the pip-installed plotly package)
// drawing the usage report. No inline script, so the page's CSP can forbid any.
(function () {
  "use strict";
  const root = document.getElementById("dashboard");
  const status = document.getElementById("chart-status");
  const OUTCOMES = [["approved", "#2e9e5b"], ["denied", "#c0392b"], ["expired", "#d4ac0d"],
                    ["failed", "#7f8c8d"], ["canceled", "#a569bd"]];
  const layout = (extra) => Object.assign({margin: {t: 10, r: 10, b: 40, l: 50}, barmode: "stack",
                                           legend: {orientation: "h"}, font: {size: 12}}, extra || {});
  const config = {displaylogo: false, responsive: true};
  // A count axis: whole numbers only (one tick per unit while the counts are small).
  const counts = (values) => ({yaxis: {tickformat: ",d", rangemode: "tozero",
                                       dtick: Math.max(...values, 0) <= 10 ? 1 : undefined}});

  function report(groupBy) {
    const params = new URLSearchParams({since: root.dataset.since, until: root.dataset.until, group_by: groupBy});
    return fetch(root.dataset.url + "?" + params, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then((r) => { if (!r.ok) { throw new Error("report " + groupBy + ": HTTP " + r.status); } return r.json(); });
  }

  function tile(label, value) {
    const div = document.createElement("div");
    div.className = "tile";
    const b = document.createElement("b");
    b.textContent = value;
    div.append(b, document.createTextNode(label));
    return div;
  }

  function conversion(id, rows) {
    return Plotly.newPlot(id, [{type: "bar", x: rows.map((r) => r.key), y: rows.map((r) => r.conversion_rate),
      text: rows.map((r) => r.approved + " / " + r.started), marker: {color: "#2b6cb0"}}],
      layout({yaxis: {tickformat: ".0%", range: [0, 1]}}), config);
  }

  Promise.all([report("day"), report("channel"), report("country")]).then(([byDay, byChannel, byCountry]) => {
    const t = byDay.totals;
    const tiles = document.getElementById("tiles");
    tiles.append(tile("started", t.started), tile("approved", t.approved),
      tile("conversion", Math.round(t.conversion_rate * 1000) / 10 + "%"),
      tile("rescued by fallback", t.rescued_by_fallback),
      tile("median seconds to approve", t.median_seconds_to_approve === null ? "–" : t.median_seconds_to_approve));
    if (byDay.estimated_spend) {
      tiles.append(tile("estimated spend (" + byDay.estimated_spend.currency + ")", byDay.estimated_spend.amount));
    }
    const days = byDay.rows.map((r) => r.key);
    return Promise.all([
      Plotly.newPlot("chart-days", OUTCOMES.map(([name, color]) => ({type: "bar", name: name, x: days,
        y: byDay.rows.map((r) => r[name]), marker: {color: color}})), layout(counts(byDay.rows.map((r) => r.started))), config),
      conversion("chart-channels", byChannel.rows),
      conversion("chart-countries", byCountry.rows),
      Plotly.newPlot("chart-rescues", [{type: "bar", x: days, y: byDay.rows.map((r) => r.rescued_by_fallback),
        marker: {color: "#16a085"}}], layout(counts(byDay.rows.map((r) => r.rescued_by_fallback))), config),
      Plotly.newPlot("chart-errors", [{type: "bar", x: byDay.carrier_errors.map((e) => String(e.code)),
        y: byDay.carrier_errors.map((e) => e.count), marker: {color: "#c0392b"}}],
        layout(Object.assign({xaxis: {type: "category", title: {text: "carrier error code"}}},
                             counts(byDay.carrier_errors.map((e) => e.count)))), config),
    ]);
  }).then(() => {
    status.textContent = "";
    document.body.dataset.charts = "ready";
  }).catch((error) => {
    status.textContent = "Could not draw the charts: " + error.message;
    document.body.dataset.charts = "failed";
  });
})();
