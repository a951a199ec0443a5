(function(){
const data = id => JSON.parse(document.getElementById(id).textContent);
const S = data('report-state');
const FIGS = data('report-figures');
const cfg = {displaylogo:false, responsive:true};
const plots = Object.keys(FIGS).map(id => Plotly.newPlot(id, FIGS[id].data, FIGS[id].layout, cfg));
const lat = document.getElementById('max-latency'), drop = document.getElementById('max-drop');
const rows = Array.from(document.querySelectorAll('#front-table tr.front-row'));
const fmt = v => (Math.abs(v) >= 1e-3 || v === 0) ? Number(v.toPrecision(4)).toString() : v.toExponential(3);
function limits(){
  return {lat: lat ? parseFloat(lat.value) : Infinity, drop: drop ? parseFloat(drop.value) : Infinity};
}
function inside(t, L){
  const r = S.front[t];
  if (!r) return true;
  const eps = 1e-12;
  if (r.latency !== null && r.latency > L.lat * (1 + eps) + eps) return false;
  if (r.drop !== null && r.drop > L.drop + Math.abs(L.drop) * eps + eps) return false;
  return true;
}
function apply(){
  const L = limits();
  if (lat) document.getElementById('max-latency-value').textContent = fmt(L.lat);
  if (drop) document.getElementById('max-drop-value').textContent = fmt(L.drop);
  let shown = 0;
  rows.forEach(tr => { const ok = inside(tr.dataset.trial, L); tr.style.display = ok ? '' : 'none'; if (ok) shown++; });
  document.getElementById('front-count').textContent = shown + ' of ' + rows.length + ' front trials within the limits';
  S.scatters.forEach(sc => {
    const a = {x:[], y:[], text:[]}, b = {x:[], y:[], text:[]};
    sc.front.forEach(p => { const t = inside(String(p[0]), L) ? a : b; t.x.push(p[1]); t.y.push(p[2]); t.text.push(p[3]); });
    Plotly.restyle(sc.div, {x:[a.x, b.x], y:[a.y, b.y], text:[a.text, b.text]}, [sc.front_trace, sc.front_trace + 1]);
  });
  if (S.parcoords) {
    const pc = S.parcoords, upd = {};
    // Brush the axes only while a limit is below its slider's top, so an untouched page shows every line.
    if (pc.latency !== null && lat) {
      upd['dimensions[' + pc.latency + '].constraintrange'] = L.lat < parseFloat(lat.max) ? [[pc.lat_lo, Math.max(L.lat, pc.lat_lo)]] : null;
    }
    if (pc.metric !== null && drop && S.baseline_metric !== null) {
      const edge = S.maximize ? S.baseline_metric - L.drop : S.baseline_metric + L.drop;
      upd['dimensions[' + pc.metric + '].constraintrange'] = L.drop >= parseFloat(drop.max) ? null
        : (S.maximize ? [[Math.min(edge, pc.m_hi), pc.m_hi]] : [[pc.m_lo, Math.max(edge, pc.m_lo)]]);
    }
    if (Object.keys(upd).length) Plotly.restyle(pc.div, upd, [0]);
  }
}
Promise.all(plots).then(() => {
  [lat, drop].forEach(el => { if (el) { el.addEventListener('input', apply); el.addEventListener('change', apply); } });
  document.getElementById('reset-limits').addEventListener('click', () => {
    if (lat) lat.value = lat.max; if (drop) drop.value = drop.max; apply();
  });
  apply();
  document.body.dataset.ready = 'true';
});
})();
