// The dashboard's charts (uPlot), drawn from the JSON each chart embeds
// (<script type="application/json" data-chart="ID">: data, not code, so the
// Content-Security-Policy allows it).
"use strict";

function drawCharts(root) {
  if (typeof uPlot === "undefined") return;
  root.querySelectorAll("script[type='application/json'][data-chart]").forEach(function (node) {
    var spec = JSON.parse(node.textContent);
    var target = document.getElementById(node.dataset.chart);
    if (!target || target.dataset.drawn) return;
    target.dataset.drawn = "1";
    var palette = ["#1f5f8b", "#2e8b57", "#b8860b", "#8b3a3a", "#6a5acd", "#555"];
    var series = [{}].concat(spec.series.map(function (name, i) {
      return { label: name, stroke: palette[i % palette.length], width: 2 };
    }));
    new uPlot({
      width: Math.max(320, target.clientWidth || 640),
      height: 220,
      series: series,
      axes: [{}, { label: spec.unit || "" }],
      scales: { x: { time: true } },
    }, spec.data, target);
  });
}

drawCharts(document);
document.body.addEventListener("htmx:afterSwap", function (event) { drawCharts(event.target); });
