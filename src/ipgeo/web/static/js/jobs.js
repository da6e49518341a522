/* ipgeo bulk jobs: upload with progress, live job progress with back-off, the world choropleth. */
"use strict";

function formatNumber(n) { return Number(n || 0).toLocaleString("en-US"); }

function formatBytes(n) {
  var units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  var value = Number(n || 0), unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit ? value.toFixed(1) + " " + units[unit] : value + " bytes";
}

function formatSeconds(s) {
  if (s === null || s === undefined) { return ""; }
  if (s < 60) { return s + " s"; }
  var m = Math.floor(s / 60);
  return m < 60 ? m + " min " + (s % 60) + " s" : Math.floor(m / 60) + " h " + (m % 60) + " min";
}

function errorMessage(xhrOrResponseText, fallback) {
  try {
    var data = JSON.parse(xhrOrResponseText);
    if (data && data.error && data.error.message) { return data.error.message; }
  } catch (e) { /* not JSON */ }
  return fallback;
}

function setupUpload() {
  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var input = document.getElementById("file");
  var zone = document.getElementById("dropzone");
  var nameEl = document.getElementById("file-name");
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var button = document.getElementById("start-job");
  var maxUpload = parseInt(form.getAttribute("data-max-upload"), 10);

  function showName() {
    var file = input.files && input.files[0];
    nameEl.textContent = file ? file.name + " (" + formatBytes(file.size) + ")" : "No file chosen.";
    zone.classList.toggle("has-file", !!file);
  }
  input.addEventListener("change", showName);
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.remove("dragging");
    });
  });
  zone.addEventListener("drop", function (event) {
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      showName();
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var file = input.files && input.files[0];
    var text = document.getElementById("text").value;
    if (!file && !text.trim()) {
      status.textContent = "Choose or drop a file, or paste some addresses first.";
      return;
    }
    if (file && file.size > maxUpload) {
      status.textContent = file.name + " is larger than the upload limit of " + formatBytes(maxUpload) + ".";
      return;
    }
    var data = new FormData(form);
    if (!file) { data.delete("file"); }
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("data-api"));
    xhr.withCredentials = true;  // the answer sets the owner-token cookie that lists the job
    xhr.setRequestHeader("Accept", "application/json");
    bar.hidden = false;
    bar.value = 0;
    button.disabled = true;
    status.textContent = "Uploading…";
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        bar.value = Math.round(100 * e.loaded / e.total);
        status.textContent = "Uploading… " + formatBytes(e.loaded) + " of " + formatBytes(e.total);
      }
    });
    xhr.addEventListener("load", function () {
      if (xhr.status === 202) {
        var job = JSON.parse(xhr.responseText);
        status.textContent = "Queued. Opening the job…";
        window.location.assign(job.links.page);
        return;
      }
      button.disabled = false;
      bar.hidden = true;
      status.textContent = errorMessage(xhr.responseText, "The upload failed (HTTP " + xhr.status + ").");
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      bar.hidden = true;
      status.textContent = "The upload failed: the server could not be reached.";
    });
    xhr.send(data);
  });
}

function setupJobPage() {
  var el = document.getElementById("job");
  var bar = document.getElementById("job-progress");
  if (!el || !bar) { return; }
  var url = el.getAttribute("data-status-url");
  var text = document.getElementById("progress-text");
  var heading = document.getElementById("progress-heading");
  var cancel = document.getElementById("cancel-job");
  var delay = 250, lastDone = -1, stopped = false;

  var badge = el.querySelector(".status-badge");
  var labels = { queued: "Queued", started: "Running", finished: "Finished", failed: "Failed", canceled: "Canceled" };

  function render(job) {
    var p = job.progress || {};
    if (badge && labels[job.status]) {
      badge.textContent = labels[job.status];
      badge.className = "status-badge status-" + job.status;
      badge.setAttribute("data-status", job.status);
    }
    if (job.status === "queued") {
      heading.textContent = "Waiting for a worker";
      text.textContent = "Queued" + (job.queue_position ? ", position " + job.queue_position : "") + ".";
      return;
    }
    heading.textContent = job.cancel_requested ? "Stopping…" : "Working";
    var percent = job.status === "finished" ? 100 : (p.percent || 0);
    bar.value = percent;
    var parts = [percent.toFixed(1).replace(/\.0$/, "") + " %"];
    if (p.lines) { parts.push(formatNumber(p.lines) + " lines"); }
    if (p.lines_per_second) { parts.push(formatNumber(p.lines_per_second) + " lines/s"); }
    if (p.eta_seconds && job.status === "started") { parts.push("about " + formatSeconds(p.eta_seconds) + " left"); }
    var c = job.chunks;
    if (c && c.total > 1 && job.status === "started") {
      parts.push("chunks: " + c.done + " of " + c.total + " done, " + c.running + " running, " + c.queued + " waiting");
    }
    text.textContent = parts.join(" · ");
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (job) {
        render(job);
        if (job.status === "finished" || job.status === "failed" || job.status === "canceled") {
          stopped = true;
          el.setAttribute("data-status", job.status);
          // The result view is rendered by the server: show 100 % a moment, then load it.
          window.setTimeout(function () { window.location.reload(); }, job.status === "finished" ? 700 : 200);
          return;
        }
        var done = (job.progress && job.progress.done) || 0;
        delay = done !== lastDone ? 250 : Math.min(delay * 1.5, 5000);
        lastDone = done;
        window.setTimeout(poll, delay);
      })
      .catch(function () {
        text.textContent = "Lost contact with the server; retrying…";
        delay = Math.min(delay * 2, 10000);
        window.setTimeout(poll, delay);
      });
  }

  if (cancel) {
    cancel.addEventListener("click", function () {
      cancel.disabled = true;
      // The owner token travels in the HttpOnly cookie set when this browser created the job.
      fetch(url, { method: "DELETE", headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (response.status === 403) {
            text.textContent = "Only the browser (or owner token) that created this job can cancel it.";
            return;
          }
          if (response.status >= 400) { throw new Error("HTTP " + response.status); }
          heading.textContent = "Stopping…";
          delay = 300;
        })
        .catch(function () { cancel.disabled = false; });
    });
  }
  if (!stopped) { window.setTimeout(poll, 300); }
}

var SHADES = ["#dfe3fb", "#b9c1f5", "#8d99ec", "#6170dd", "#3b48c4", "#222c8f"];
var STEPS = [0.0005, 0.002, 0.01, 0.05, 0.2];  // share of lines where each shade starts
var NO_LINES = "#f7f4ec";

function shade(share) {
  if (share <= 0) { return NO_LINES; }
  var index = 0;
  while (index < STEPS.length && share >= STEPS[index]) { index += 1; }
  return SHADES[index];
}

function addLegend(map) {
  var legend = L.control({ position: "bottomleft" });
  legend.onAdd = function () {
    var div = L.DomUtil.create("div", "map-legend");
    var labels = ["< 0.05 %", "0.05–0.2 %", "0.2–1 %", "1–5 %", "5–20 %", "≥ 20 %"];
    var rows = [[NO_LINES, "none"]].concat(SHADES.map(function (color, i) { return [color, labels[i]]; }));
    rows.forEach(function (row) {
      var line = L.DomUtil.create("span", "legend-row", div);
      var swatch = L.DomUtil.create("i", "legend-swatch", line);
      swatch.style.background = row[0];
      line.appendChild(document.createTextNode(row[1]));
    });
    return div;
  };
  legend.addTo(map);
}

// Rings that cross the antimeridian (Russia, Fiji) jump from +180 to -180 and would be drawn
// as bands across the map: make their longitudes continuous instead.
function unwrapRing(ring) {
  var previous = null;
  return ring.map(function (point) {
    var lon = point[0];
    if (previous !== null) {
      while (lon - previous > 180) { lon -= 360; }
      while (lon - previous < -180) { lon += 360; }
    }
    previous = lon;
    return [lon, point[1]];
  });
}

function unwrapGeometry(geometry) {
  if (!geometry) { return geometry; }
  if (geometry.type === "Polygon") {
    return { type: "Polygon", coordinates: geometry.coordinates.map(unwrapRing) };
  }
  if (geometry.type === "MultiPolygon") {
    return {
      type: "MultiPolygon",
      coordinates: geometry.coordinates.map(function (polygon) { return polygon.map(unwrapRing); }),
    };
  }
  return geometry;
}

function setupChoropleth() {
  var el = document.getElementById("choropleth");
  if (!el || typeof L === "undefined") { return; }
  var counts = JSON.parse(el.getAttribute("data-counts") || "{}");
  var total = 0;
  Object.keys(counts).forEach(function (key) { total += counts[key]; });
  var map = L.map(el, { worldCopyJump: true, scrollWheelZoom: false, minZoom: 1, maxZoom: 6, zoomSnap: 0.25 });
  map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
  map.attributionControl.addAttribution("Natural Earth");
  map.fitBounds([[-56, -168], [78, 190]], { animate: false });
  addLegend(map);
  fetch(el.getAttribute("data-world"), { credentials: "same-origin" })
    .then(function (response) {
      if (!response.ok) { throw new Error("world outline: HTTP " + response.status); }
      return response.json();
    })
    .then(function (world) {
      // Antarctica circles the pole and has no visitors worth a colour.
      world.features = world.features
        .filter(function (feature) { return feature.properties.iso_a2 !== "AQ"; })
        .map(function (feature) {
          return { type: "Feature", properties: feature.properties, geometry: unwrapGeometry(feature.geometry) };
        });
      L.geoJSON(world, {
        style: function (feature) {
          var count = counts[feature.properties.iso_a2] || 0;
          return { color: "#8a99ad", weight: 0.6, fillColor: shade(total ? count / total : 0), fillOpacity: 1 };
        },
        onEachFeature: function (feature, layer) {
          var count = counts[feature.properties.iso_a2] || 0;
          var share = total ? (100 * count / total).toFixed(1) + " %" : "";
          layer.bindTooltip(escapeText(feature.properties.name) + ": " + formatNumber(count) +
            (count ? " lines (" + share + ")" : " lines"), { sticky: true });
        },
      }).addTo(map);
      el.setAttribute("data-ready", "true");
    })
    .catch(function (error) { console.warn(error.message); });
}

function escapeText(text) {
  var div = document.createElement("div");
  div.textContent = text;
  return div.innerHTML;
}

function setupShareBars() {
  document.querySelectorAll(".share-bar[data-share]").forEach(function (el) {
    var share = parseFloat(el.getAttribute("data-share"));
    if (isFinite(share)) { el.style.setProperty("--share", Math.max(0, Math.min(1, share)) * 100 + "%"); }
  });
}

document.addEventListener("DOMContentLoaded", function () {
  setupUpload();
  setupJobPage();
  setupChoropleth();
  setupShareBars();
});
