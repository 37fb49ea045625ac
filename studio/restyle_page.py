"""The page's Restyle action (studio/page.py splices these in): a form on a finished job, with a box dragged on its
first frame, and a restyled clip shown beside its original. User text reaches the DOM only escaped.
"""

RESTYLE_CSS = r"""
#result.compare{display:grid;grid-template-columns:1fr 1fr;gap:.5em;align-items:start}
#result.compare>.full{grid-column:1/-1}.cap{font-size:.85em;color:var(--mute)}
#orig,#origgif{width:100%;max-height:60vh;object-fit:contain;background:#111;border-radius:6px}
#rs-wrap{position:relative;display:inline-block;cursor:crosshair;user-select:none;touch-action:none}
#rs-frame{display:block;width:min(100%,320px);image-rendering:pixelated;border-radius:4px}
#rs-box{position:absolute;border:2px solid #ffd400;box-shadow:0 0 0 1px #000;pointer-events:none}
#rs-msg{color:var(--bad);min-height:1.3em;margin:.4em 0}
"""

RESTYLE_ORIG = r"""
  <span class="cap hidden" id="cap-orig">original</span><span class="cap hidden" id="cap-new">restyled</span>
  <video id="orig" class="hidden" loop autoplay muted playsinline controls></video>
  <img id="origgif" class="hidden" alt="the original clip">"""

RESTYLE_FORM = r"""
  <div class="full" id="restyle-area"><button id="restyle-open" class="hidden">Restyle&hellip;</button>
   <div id="restyle-form" class="hidden"><h2>Restyle this clip</h2>
    <div id="rs-wrap"><img id="rs-frame" alt="first frame: drag a box on it" draggable="false">
     <div id="rs-box" class="hidden"></div></div>
    <div class="meta"><span id="rs-boxtext"></span> <button type="button" id="rs-clear">Whole frame</button></div>
    <label>Target prompt <input type="text" id="rs-target" placeholder="e.g. an oil painting of the scene"></label>
    <label>Source prompt <input type="text" id="rs-source" placeholder="optional: what the clip shows now"></label>
    <label>Steps <input type="number" id="rs-steps" min="1" required></label>
    <button class="primary" id="rs-go">Restyle</button><div id="rs-msg" role="alert"></div>
   </div></div>"""

RESTYLE_JS = r"""
const RESTYLE = __RESTYLE__, RESTYLE_STAGES = ['restyle', 'encoding'];
let rsBox = null, rsDrag = null;
function restyleInfo(s) {
  return `restyled: &quot;${esc(s.target_prompt)}&quot;, ${esc(s.steps)} steps${s.box ? ', box ' + esc(s.box.join(',')) : ''}`;
}
function restyleShow(job) {  // a finished job: a restyled one beside its original; any one may be restyled
  const r = !!(job.settings && job.settings.backend === 'restyle' && job.source);
  $('result').classList.toggle('compare', r);
  const v = $('orig'), fmts = ['mp4', 'webm'].filter(f => (job.outputs || {})[f]), gif = !fmts.length;
  for (const id of ['cap-orig', 'cap-new']) $(id).classList.toggle('hidden', !r);
  v.classList.toggle('hidden', !r || gif); $('origgif').classList.toggle('hidden', !r || !gif);
  $('downloads').classList.add('full');
  if (r && gif) $('origgif').src = `/jobs/${esc(job.source)}/clip?format=gif`;
  else if (r) {
    v.innerHTML = fmts.map(f => `<source src="/jobs/${esc(job.source)}/clip?format=${f}" type="video/${f}">`).join('');
    v.load(); v.play().catch(() => {});
  } else { v.removeAttribute('src'); v.innerHTML = ''; }
  $('restyle-open').classList.toggle('hidden', !RESTYLE); $('restyle-form').classList.add('hidden');
}
function rsAt(e) {  // mouse position in frame pixels, clamped to the frame
  const img = $('rs-frame'), r = img.getBoundingClientRect();
  const x = (e.clientX - r.left) * img.naturalWidth / r.width, y = (e.clientY - r.top) * img.naturalHeight / r.height;
  return [Math.min(img.naturalWidth, Math.max(0, x)), Math.min(img.naturalHeight, Math.max(0, y))];
}
function rsSet(a, b) {
  const x = Math.round(Math.min(a[0], b[0])), y = Math.round(Math.min(a[1], b[1]));  // corners to the nearest pixel
  rsBox = [x, y, Math.round(Math.max(a[0], b[0])) - x, Math.round(Math.max(a[1], b[1])) - y]; rsDraw();
}
function rsDraw() {
  const el = $('rs-box'), img = $('rs-frame');
  if (!rsBox || !img.naturalWidth) {
    el.classList.add('hidden'); $('rs-boxtext').textContent = 'Whole frame: drag on the frame to change only a box.'; return;
  }
  const r = img.getBoundingClientRect(), sx = r.width / img.naturalWidth, sy = r.height / img.naturalHeight;
  Object.assign(el.style, {left: `${rsBox[0] * sx}px`, top: `${rsBox[1] * sy}px`, width: `${rsBox[2] * sx}px`,
                           height: `${rsBox[3] * sy}px`});
  el.classList.remove('hidden');
  $('rs-boxtext').textContent = `Box: x ${rsBox[0]}, y ${rsBox[1]}, ${rsBox[2]}x${rsBox[3]} px of the frame.`;
}
function restyleWire() {
  $('restyle-open').onclick = () => {
    rsBox = null; $('rs-msg').textContent = ''; $('restyle-form').classList.remove('hidden');
    const img = $('rs-frame'); img.onload = rsDraw;
    img.src = `/jobs/${$('result').dataset.id}/first-frame?t=${Date.now()}`;
    $('rs-steps').max = LIMITS.restyle_steps; $('rs-steps').value = Math.min(200, LIMITS.restyle_steps); rsDraw();
  };
  $('rs-frame').addEventListener('mousedown', e => { e.preventDefault(); rsDrag = rsAt(e); rsSet(rsDrag, rsDrag); });
  document.addEventListener('mousemove', e => { if (rsDrag) rsSet(rsDrag, rsAt(e)); });
  document.addEventListener('mouseup', e => {
    if (!rsDrag) return;
    rsSet(rsDrag, rsAt(e)); rsDrag = null;
    if (rsBox[2] < 1 || rsBox[3] < 1) { rsBox = null; rsDraw(); }  // a click, not a drag
  });
  $('rs-clear').onclick = () => { rsBox = null; rsDraw(); };
  $('rs-go').onclick = async () => {
    const msg = t => { $('rs-msg').textContent = t; }, id = $('result').dataset.id;
    if (!$('rs-target').value.trim()) { msg('Say what the clip should look like (target prompt).'); return; }
    if ($('rs-steps').value === '') { msg(`Steps is empty: enter a number (at most ${LIMITS.restyle_steps}).`); return; }
    const f = new FormData(); f.append('target_prompt', $('rs-target').value); f.append('steps', $('rs-steps').value);
    if ($('rs-source').value.trim()) f.append('source_prompt', $('rs-source').value);
    if (rsBox) f.append('box', rsBox.join(','));
    $('rs-go').disabled = true; msg('');
    let r, body;
    try { r = await fetch(`/jobs/${id}/restyle`, {method: 'POST', body: f}); body = await r.json().catch(() => null); }
    catch (e) { msg('Cannot reach the studio server: is it running?'); return; }
    finally { $('rs-go').disabled = false; }
    if (!r.ok) { msg(detail(body, r.status)); return; }
    follow(body.id, true); refresh();
  };
}
"""
