/* Draws every <canvas data-chart="ID"> from the JSON in <script id="ID"> (json_script), with the vendored Chart.js. */
(function () {
  "use strict";

  // Series that name an axis (amounts in different currencies) get a y axis each: "y" for the first axis
  // named, then "y1", "y2"... on the right, so no currency is read against another's scale.
  function axisIds(spec) {
    var ids = {};
    var count = 0;
    spec.series.forEach(function (s) {
      if (s.axis && !(s.axis in ids)) {
        ids[s.axis] = { id: count === 0 ? "y" : "y" + count, colour: s.colour.split(",")[0] };
        count += 1;
      }
    });
    return ids;
  }

  function dataset(spec, series, axes) {
    var colours = series.colour.split(",");
    var line = spec.kind === "line";
    var item = {
      label: series.label,
      data: series.values.map(Number),
      backgroundColor: spec.kind === "doughnut" ? colours : (line ? colours[0] + "33" : colours[0]),
      borderColor: spec.kind === "doughnut" ? "#ffffff" : colours[0],
      borderWidth: line ? 2 : 1,
      fill: line && spec.series.length === 1,
      tension: 0,
      pointRadius: line ? 2 : 0
    };
    if (series.axis && axes[series.axis]) {
      item.yAxisID = axes[series.axis].id;
    }
    return item;
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
    var axes = axisIds(spec);
    if (spec.kind !== "doughnut") {
      options.indexAxis = spec.horizontal ? "y" : "x";
      options.scales = {
        x: { stacked: spec.stacked },
        y: { stacked: spec.stacked, beginAtZero: true, title: { display: !!spec.unit, text: spec.unit } }
      };
      Object.keys(axes).forEach(function (name, index) {
        options.scales[axes[name].id] = {
          stacked: spec.stacked, beginAtZero: true, position: index === 0 ? "left" : "right",
          title: { display: true, text: name, color: axes[name].colour }, grid: { drawOnChartArea: index === 0 }
        };
      });
      options.interaction = { mode: "index", intersect: false };
    }
    var chart = new window.Chart(canvas, {
      type: spec.kind,
      data: { labels: spec.labels, datasets: spec.series.map(function (s) { return dataset(spec, s, axes); }) },
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
