// The dashboard's charts: stacked bars per day and bank, from the data the page embeds
// (json_script). Chart.js is vendored under ui/static/ui/vendor/chartjs (no CDN, no build).
(function () {
  var COLOURS = ["#417690", "#e07b39", "#5a9e4b", "#b84a62", "#8a6fb8", "#c9a227", "#3f9a9a", "#8c8c8c"];

  function draw(canvasId, dataId) {
    var data = JSON.parse(document.getElementById(dataId).textContent);
    data.datasets.forEach(function (dataset, i) {
      dataset.backgroundColor = COLOURS[i % COLOURS.length];
    });
    return new Chart(document.getElementById(canvasId), {
      type: "bar",
      data: data,
      options: {
        maintainAspectRatio: false,
        animation: false,
        scales: {
          x: { stacked: true, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }
        },
        plugins: { legend: { position: "bottom" } }
      }
    });
  }

  if (typeof Chart === "undefined") return;  // the script did not load: the tables still show
  draw("matches-chart", "matches-data");
  draw("cases-chart", "cases-data");
})();
