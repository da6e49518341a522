/* ipgeo pages: copy buttons, live local time and the location map. No network but the app. */
"use strict";

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text);
  }
  // Plain-http pages have no async clipboard: fall back to a temporary selection.
  return new Promise(function (resolve, reject) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    if (ok) { resolve(); } else { reject(new Error("copy failed")); }
  });
}

function setupCopyButtons() {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var label = button.querySelector(".copy-label");
    button.addEventListener("click", function () {
      copyText(button.getAttribute("data-copy")).then(function () {
        button.classList.add("copied");
        if (label) { label.textContent = "Copied"; }
      }, function () {
        if (label) { label.textContent = "Press Ctrl+C"; }
      });
      window.setTimeout(function () {
        button.classList.remove("copied");
        if (label) { label.textContent = "Copy"; }
      }, 2000);
    });
  });
}

function offsetMinutes(text) {
  var match = /^([+-])(\d{2}):(\d{2})$/.exec(text || "");
  if (!match) { return null; }
  var minutes = parseInt(match[2], 10) * 60 + parseInt(match[3], 10);
  return match[1] === "-" ? -minutes : minutes;
}

function setupClocks() {
  var clocks = [];
  document.querySelectorAll("time.clock[data-utc-offset]").forEach(function (el) {
    var offset = offsetMinutes(el.getAttribute("data-utc-offset"));
    if (offset !== null) { clocks.push({ el: el, offset: offset }); }
  });
  if (!clocks.length) { return; }
  var days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    var now = Date.now();
    clocks.forEach(function (clock) {
      var local = new Date(now + clock.offset * 60000);
      clock.el.textContent = pad(local.getUTCHours()) + ":" + pad(local.getUTCMinutes()) + ":" +
        pad(local.getUTCSeconds()) + " · " + days[local.getUTCDay()];
    });
  }
  tick();
  window.setInterval(tick, 1000);
}

function setupMap() {
  var el = document.getElementById("map");
  if (!el || typeof L === "undefined") { return; }
  var lat = parseFloat(el.getAttribute("data-lat"));
  var lon = parseFloat(el.getAttribute("data-lon"));
  if (!isFinite(lat) || !isFinite(lon)) { return; }
  var radiusKm = parseFloat(el.getAttribute("data-radius-km"));
  var calm = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  var map = L.map(el, {
    worldCopyJump: true, scrollWheelZoom: false, minZoom: 1, maxZoom: 12,
    zoomAnimation: !calm, fadeAnimation: !calm, markerZoomAnimation: !calm,
  });
  map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
  // The bundled world outline is always drawn, under any opted-in tiles, so the map
  // still shows where the address is when the tile server cannot be reached.
  map.createPane("outline").style.zIndex = 150;
  map.attributionControl.addAttribution("Natural Earth");
  fetch(el.getAttribute("data-world"), { credentials: "same-origin" })
    .then(function (response) {
      if (!response.ok) { throw new Error("world outline: HTTP " + response.status); }
      return response.json();
    })
    .then(function (world) {
      L.geoJSON(world, {
        pane: "outline",
        interactive: false,
        style: { color: "#8a99ad", weight: 0.8, fillColor: "#f7f4ec", fillOpacity: 1 },
      }).addTo(map);
      el.setAttribute("data-ready", "true");
    })
    .catch(function (error) { console.warn(error.message); });
  var tiles = el.getAttribute("data-tiles");
  if (tiles) {
    var credit = el.getAttribute("data-tiles-attribution");
    if (credit) { map.attributionControl.addAttribution(escapeHtml(credit)); }
    L.tileLayer(tiles, { maxZoom: 18 }).addTo(map);
  }
  var center = L.latLng(lat, lon);
  var marker = L.marker(center, { title: el.getAttribute("data-label") || "" }).addTo(map);
  marker.bindPopup(escapeHtml(el.getAttribute("data-label") || ""));
  map.setView(center, 5);
  if (isFinite(radiusKm) && radiusKm > 0) {
    var circle = L.circle(center, {
      radius: radiusKm * 1000, color: "#3443c9", weight: 2, fillColor: "#3443c9", fillOpacity: 0.15,
    }).addTo(map);
    map.fitBounds(circle.getBounds(), { padding: [48, 48], maxZoom: 5, animate: false });
    if (map.getZoom() < 2) { map.setView(center, 2, { animate: false }); }
  }
}

function escapeHtml(text) {
  var div = document.createElement("div");
  div.textContent = text;
  return div.innerHTML;
}

document.addEventListener("DOMContentLoaded", function () {
  setupCopyButtons();
  setupClocks();
  setupMap();
});
