// billing-oss console: selection helpers and charts. A chart's data is JSON in its element's
// data-values attribute (no inline script runs: the Content-Security-Policy forbids it, and
// htmx drops script elements from swapped content).
"use strict";
(function () {
  function data(el) {
    return el.dataset.values ? JSON.parse(el.dataset.values) : null;
  }
  function width(el) { return Math.max(320, el.clientWidth || 600); }

  function usageChart(el, d) {
    // Records per day with the band a normal day stays inside (low..high).
    var opts = {
      width: width(el), height: 260,
      series: [
        {},
        { label: "low", stroke: "rgba(31,95,168,0.25)", points: { show: false } },
        { label: "high", stroke: "rgba(31,95,168,0.25)", points: { show: false } },
        { label: el.dataset.label || "records", stroke: "#1f5fa8", width: 2 },
      ],
      bands: [{ series: [2, 1], fill: "rgba(31,95,168,0.12)" }],
      axes: [{}, { size: 60 }],
    };
    return new uPlot(opts, [d.x, d.low, d.high, d.records], el);
  }

  function histogram(el, d) {
    var xs = d.labels.map(function (_, i) { return i; });
    var opts = {
      width: width(el), height: 240,
      scales: { x: { time: false, range: [-0.5, xs.length - 0.5] } },
      series: [
        {},
        { label: el.dataset.label || "accounts", fill: "rgba(31,95,168,0.6)", stroke: "#1f5fa8",
          paths: uPlot.paths.bars({ size: [0.8, 80] }), points: { show: false } },
      ],
      axes: [
        { splits: function () { return xs; }, values: function (_, ticks) {
            return ticks.map(function (i) { return d.labels[i] || ""; }); }, size: 40 },
        { size: 50 },
      ],
    };
    return new uPlot(opts, [xs, d.accounts], el);
  }

  function drawCharts(root) {
    if (typeof uPlot === "undefined") { return; }
    root.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      if (el.dataset.drawn) { return; }
      var d = data(el);
      if (!d) { return; }
      el.dataset.drawn = "1";
      if (el.dataset.chart === "usage") { usageChart(el, d); } else { histogram(el, d); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    var all = document.getElementById("select-all");
    if (all) {
      all.addEventListener("change", function () {
        document.querySelectorAll("#triage input[name=id]").forEach(function (box) {
          box.checked = all.checked;
        });
      });
    }
  });
  // A refused action answers 422 with its reason as a fragment: show it (htmx swaps only 2xx
  // responses unless told otherwise, so the operator would see nothing happen).
  document.addEventListener("htmx:beforeSwap", function (evt) {
    if (evt.detail.xhr.status === 422) {
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
    }
  });
  // htmx:load fires on content swapped in (an outerHTML swap detaches the old target, whose
  // own events no longer reach the document).
  document.addEventListener("htmx:load", function () { drawCharts(document); });
})();
