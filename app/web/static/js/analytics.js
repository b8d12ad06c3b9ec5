// The analytics page's time-series chart (uPlot), drawn from the JSON the page carries: no inline script.
"use strict";

(function () {
  const holder = document.getElementById("series-chart");
  const source = document.getElementById("series-data");
  if (!holder || !source || typeof uPlot === "undefined") return;
  const series = JSON.parse(source.textContent);
  const xs = series.ts.map((ts) => Date.parse(ts) / 1000);
  const options = {
    width: Math.max(holder.clientWidth, 300),
    height: 260,
    series: [
      {},
      { label: "Scans", stroke: "#0b57d0", width: 2 },
      { label: "Unique", stroke: "#1a7f37", width: 2 },
      { label: "Bots", stroke: "#8c959f", width: 1, dash: [4, 4] },
    ],
    axes: [{}, { label: "count" }],
  };
  const chart = new uPlot(options, [xs, series.scans, series.unique, series.bots], holder);
  window.addEventListener("resize", () => chart.setSize({ width: Math.max(holder.clientWidth, 300), height: 260 }));
})();
