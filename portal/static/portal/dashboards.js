/* Draws every <canvas data-chart="ID"> from the JSON in <script id="ID"> (json_script), with the vendored Chart.js. */
(function () {
  "use strict";

  function dataset(spec, series) {
    var colours = series.colour.split(",");
    var line = spec.kind === "line";
    return {
      label: series.label,
      data: series.values.map(Number),
      backgroundColor: spec.kind === "doughnut" ? colours : (line ? colours[0] + "33" : colours[0]),
      borderColor: spec.kind === "doughnut" ? "#ffffff" : colours[0],
      borderWidth: line ? 2 : 1,
      fill: line && spec.series.length === 1,
      tension: 0,
      pointRadius: line ? 2 : 0
    };
  }

  function draw(canvas) {
    var source = document.getElementById(canvas.getAttribute("data-chart"));
    if (!source || typeof window.Chart === "undefined") {
      return;
    }
    var spec = JSON.parse(source.textContent);
    var options = {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      plugins: { legend: { position: "bottom", display: spec.series.length > 1 || spec.kind === "doughnut" } }
    };
    if (spec.kind !== "doughnut") {
      options.indexAxis = spec.horizontal ? "y" : "x";
      options.scales = {
        x: { stacked: spec.stacked },
        y: { stacked: spec.stacked, beginAtZero: true, title: { display: !!spec.unit, text: spec.unit } }
      };
      options.interaction = { mode: "index", intersect: false };
    }
    var chart = new window.Chart(canvas, {
      type: spec.kind,
      data: { labels: spec.labels, datasets: spec.series.map(function (s) { return dataset(spec, s); }) },
      options: options
    });
    canvas.setAttribute("data-drawn", String(chart.data.datasets.length));
  }

  function drawAll() {
    var canvases = document.querySelectorAll("canvas[data-chart]");
    for (var i = 0; i < canvases.length; i++) {
      draw(canvases[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
