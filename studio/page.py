"""The studio page: server-rendered HTML and a little JS (no build step); talks only to the job API.

Everything user-made (prompts, file names, errors) reaches the DOM through textContent or `esc`, never raw.
"""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dreammover studio</title>
<style>
:root{--fg:#1d1d1f;--mute:#6e6e73;--line:#d2d2d7;--acc:#0a64d8;--bad:#b3261e;--warn:#8a5a00}
*{box-sizing:border-box}body{font:15px/1.4 system-ui,sans-serif;color:var(--fg);margin:0;background:#f5f5f7}
header{padding:.5em 1.2em;background:#fff;border-bottom:1px solid var(--line);display:flex;align-items:center;gap:1em}
h1{font-size:1.2em;margin:0;flex:1}header form{margin:0}
main{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1em;padding:1em;max-width:1200px;margin:auto}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:1em}
h2{font-size:1em;margin:0 0 .6em}
.pair{display:grid;grid-template-columns:1fr auto 1fr;gap:.5em;align-items:center}
.drop{border:2px dashed var(--line);border-radius:8px;min-height:130px;display:flex;flex-direction:column;
 align-items:center;justify-content:center;text-align:center;padding:.4em;cursor:pointer;color:var(--mute)}
.drop.over{border-color:var(--acc)}.drop img{max-width:100%;max-height:140px;border-radius:4px}
.drop input{position:absolute;opacity:0;width:1px;height:1px}
label{display:block;margin:.45em 0;color:var(--mute)}label input,label select{display:block;width:100%;
 padding:.35em;font:inherit;color:var(--fg)}
.row{display:grid;grid-template-columns:repeat(auto-fit,minmax(110px,1fr));gap:.5em}
.formats{display:flex;gap:1em;flex-wrap:wrap}.formats label{display:inline-flex;align-items:center;gap:.3em;margin:0}
.formats input{width:auto}
button,select,input,.dl a,a.act{min-height:44px}
button{font:inherit;padding:.45em .9em;border-radius:6px;border:1px solid var(--line);background:#fff;cursor:pointer}
button.primary{background:var(--acc);color:#fff;border-color:var(--acc)}
a.act,.dl a{display:inline-flex;align-items:center;padding:0 .5em;color:var(--acc)}
#msg,#jobmsg{color:var(--bad);min-height:1.3em;margin:.4em 0}#warnings li{color:var(--warn)}
progress{width:100%;height:14px}.stages{display:flex;flex-wrap:wrap;gap:.3em;margin:.4em 0}
.stages span{font-size:.8em;padding:.1em .5em;border-radius:10px;background:#eee;color:var(--mute)}
.stages span.now{background:var(--acc);color:#fff}.stages span.past{background:#cfe3ff;color:var(--fg)}
#preview,#clip,#gifclip{width:100%;max-height:60vh;object-fit:contain;background:#111;border-radius:6px}
ul{list-style:none;padding:0;margin:0}li.hist{display:grid;grid-template-columns:auto 1fr;gap:.6em;
 padding:.5em 0;border-top:1px solid var(--line)}li.hist img{width:56px;height:56px;object-fit:cover;border-radius:4px}
.meta{font-size:.85em;color:var(--mute)}.state-failed{color:var(--bad)}
.acts{display:flex;flex-wrap:wrap;align-items:center;gap:.3em}.hidden{display:none}
<!--restyle-css-->
@media (max-width:760px){main{grid-template-columns:minmax(0,1fr);padding:.5em}}
</style></head>
<body><header><h1>dreammover studio</h1><span class="meta" id="user"></span>
 <form method="post" action="/signout" id="signout"><button type="submit" id="signout-go">Sign out</button></form></header>
<main>
<section id="new"><h2>New clip</h2>
 <div class="pair">
  <label class="drop" id="drop0" for="f0"><span>Drop or choose<br>photo 1</span><img id="t0" class="hidden" alt="photo 1">
   <input type="file" id="f0" accept="image/*"></label>
  <button type="button" id="swap" title="swap the photos">&#8646;</button>
  <label class="drop" id="drop1" for="f1"><span>Drop or choose<br>photo 2</span><img id="t1" class="hidden" alt="photo 2">
   <input type="file" id="f1" accept="image/*"></label>
 </div>
 <label>Preset <select id="preset"></select></label>
 <div class="row">
  <label>In-between frames <input type="number" id="frames" min="1" required></label>
  <label>Size (long side) <input type="number" id="size" min="64" step="64" required></label>
  <label>Seed <input type="number" id="seed" min="0" required></label>
 </div>
 <label>Method <select id="backend"><option value="dreammover">DreamMover (semantic, same subject)</option>
  <option value="svd">SVD keyframes (real motion; Generative Inbetweening)</option></select></label>
 <label>Prompt <input type="text" id="prompt" placeholder="optional"></label>
 <div class="formats" id="formats">Also encode:
  <label><input type="checkbox" id="fmt-mp4" value="mp4">MP4</label>
  <label><input type="checkbox" id="fmt-webm" value="webm">WebM</label>
  <label><input type="checkbox" id="fmt-gif" value="gif">GIF</label></div>
 <button class="primary" id="go">Make clip</button>
 <div id="msg" role="alert"></div>
 <h2>Queue</h2><ul id="queue"><li class="meta">empty</li></ul>
</section>
<section id="job"><h2>Current job <span id="jobid" class="meta"></span></h2>
 <div id="idle" class="meta">Choose two photos and press "Make clip".</div>
 <div id="jobmsg" role="status"></div><ul id="warnings"></ul>
 <div id="live" class="hidden">
  <div class="stages" id="stages"></div>
  <progress id="bar" max="1" value="0"></progress>
  <div class="meta"><span id="stage"></span> &middot; <span id="pct">0%</span> &middot; <span id="eta"></span></div>
  <p><button id="cancel">Cancel</button></p>
  <img id="preview" class="hidden" alt="preview of the middle frame">
 </div>
 <div id="result" class="hidden"><!--restyle-orig-->
  <video id="clip" loop autoplay muted playsinline controls></video><img id="gifclip" class="hidden" alt="the clip">
  <p class="dl" id="downloads"></p><!--restyle-form-->
 </div>
</section>
<section id="past" style="grid-column:1/-1"><h2>History</h2><ul id="history"></ul></section>
</main>
<script>
const PRESETS = __PRESETS__, LIMITS = __LIMITS__, DEFAULTS = __DEFAULTS__, SVD = __SVD__, USER = __USER__;
//restyle-js
const STAGES = ['lora', 'inversion', 'flow', 'denoise', 'decode', 'encoding'];
const SVD_STAGES = ['encode', 'denoise', 'decode', 'encoding'];
const FINAL = ['done', 'failed', 'cancelled'];
const $ = id => document.getElementById(id);
const files = [null, null];
let source = null, current = null, shown = 0;

$('user').textContent = USER.auth ? `signed in as ${USER.name}${USER.admin ? ' (admin)' : ''}` : 'no sign-in (local)';
if (!USER.auth) $('signout').classList.add('hidden');
for (const name in PRESETS) $('preset').add(new Option(describe(name), name));
$('frames').value = DEFAULTS.num_frames; $('frames').max = LIMITS.frames;
if (!SVD) { $('backend').options[1].disabled = true; $('backend').options[1].text += ' (start with --svd-model)'; }
$('backend').onchange = () => { $('prompt').disabled = $('backend').value === 'svd'; };
$('size').value = DEFAULTS.size; $('size').max = LIMITS.size; $('seed').value = DEFAULTS.seed;
$('preset').onchange = () => { for (const f of ['mp4', 'webm', 'gif']) {  // the preset's own format is always made
  const box = $('fmt-' + f), own = PRESETS[$('preset').value].format === f; box.disabled = own; if (own) box.checked = true; } };
$('preset').onchange();

function describe(name) {
  const p = PRESETS[name], size = p.width ? `${p.width}x${p.height}` : p.aspect;
  return `${name} (${size}, ${p.loop}, ${p.fps} fps, ${p.format})`;
}
function esc(s) { return String(s).replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'})[c]); }
function say(text) { $('msg').textContent = text || ''; }
function tell(text) { $('jobmsg').textContent = text || ''; }
function mb(n) { return n >= 1e6 ? `${(n / 1048576).toFixed(1)} MiB` : `${Math.max(1, Math.round(n / 1024))} KiB`; }
function setFile(i, f) {
  files[i] = f; const img = $('t' + i);
  if (f) { img.src = URL.createObjectURL(f); img.classList.remove('hidden'); img.previousElementSibling.classList.add('hidden'); }
}
[0, 1].forEach(i => {
  $('f' + i).onchange = e => { setFile(i, e.target.files[0]); say(''); };
  const d = $('drop' + i);
  d.ondragover = e => { e.preventDefault(); d.classList.add('over'); };
  d.ondragleave = () => d.classList.remove('over');
  d.ondrop = e => { e.preventDefault(); d.classList.remove('over'); if (e.dataTransfer.files[0]) setFile(i, e.dataTransfer.files[0]); };
});
$('swap').onclick = () => { const [a, b] = files; setFile(0, b); setFile(1, a); };

function detail(body, status) {
  const d = body && body.detail;
  if (typeof d === 'string') return d;
  if (status === 401) return 'You are signed out: reload the page to sign in again.';
  return `the server answered ${status}`;
}
async function post(url, form) {
  let r;
  try { r = await fetch(url, {method: 'POST', body: form}); }
  catch (e) { say('Cannot reach the studio server: is it running?'); return null; }
  const body = await r.json().catch(() => null);
  if (!r.ok) { say(detail(body, r.status)); return null; }
  return body;
}
function settingsForm() {
  const f = new FormData(), names = {frames: 'In-between frames', size: 'Size', seed: 'Seed'};
  f.append('preset', $('preset').value);
  for (const k of ['frames', 'size', 'seed']) {  // an empty box is an error, not a silent default
    if ($(k).value === '') { say(`${names[k]} is empty: enter a number (default ${({frames: DEFAULTS.num_frames, size: DEFAULTS.size, seed: DEFAULTS.seed})[k]}).`); return null; }
    f.append(k, $(k).value);
  }
  f.append('backend', $('backend').value);
  if ($('backend').value !== 'svd') f.append('prompt', $('prompt').value);
  f.append('formats', ['mp4', 'webm', 'gif'].filter(x => $('fmt-' + x).checked).join(','));
  return f;
}
$('go').onclick = async () => {
  say('');
  if (!files[0] || !files[1]) { say('Choose two photos first.'); return; }
  for (const [i, f] of files.entries())
    if (f.size > LIMITS.upload_bytes) { say(`Photo ${i + 1} is ${mb(f.size)}; the limit is ${mb(LIMITS.upload_bytes)} per photo.`); return; }
  const form = settingsForm(); if (!form) return;
  form.append('image0', files[0]); form.append('image1', files[1]);
  $('go').disabled = true;
  const job = await post('/jobs', form);
  $('go').disabled = false;
  if (job) follow(job.id, true);
  refresh();
};
async function again(id, preset) {
  const f = new FormData(); f.append('preset', preset); say('');
  const job = await post(`/jobs/${id}/again`, f);
  if (job) follow(job.id, true);
  refresh();
}
function fmtTime(s) { return s == null ? '' : s < 60 ? `${Math.round(s)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`; }
function label(j) { return `${j.preset.name} · ${new Date(j.created * 1000).toLocaleTimeString()}`; }
function show(job) {
  $('idle').classList.add('hidden'); $('jobid').textContent = label(job);
  const running = job.state === 'queued' || job.state === 'running';
  $('live').classList.toggle('hidden', !running);
  $('bar').value = job.progress || 0; $('pct').textContent = `${Math.round(100 * (job.progress || 0))}%`;
  $('stage').textContent = job.state === 'queued' ? `queued (position ${job.position || '?'})` : job.stage;
  $('eta').textContent = job.eta != null && running ? `about ${fmtTime(job.eta)} left` : '';
  const kind = job.settings && job.settings.backend, k0 = {svd: SVD_STAGES, restyle: RESTYLE_STAGES}[kind] || STAGES;
  const stages = k0, k = stages.indexOf(job.stage);
  $('stages').innerHTML = stages.map((s, i) => `<span class="${i === k ? 'now' : i < k ? 'past' : ''}">${esc(s)}</span>`).join('');
  $('warnings').innerHTML = (job.warnings || []).map(w => `<li>Warning: ${esc(w)}</li>`).join('');
  if (running && job.previews && job.previews !== shown) {  // a new preview was written
    shown = job.previews; const img = $('preview'); img.onload = () => img.classList.remove('hidden');
    img.src = `/jobs/${job.id}/preview?n=${job.previews}`;
  }
  tell(job.state === 'failed' ? `The clip failed: ${job.error || 'unknown error'}` : job.state === 'cancelled' ? 'Cancelled.' : '');
  if (job.state === 'done' && $('result').dataset.id !== job.id) {
    $('result').dataset.id = job.id; $('result').classList.remove('hidden');
    const u = `/jobs/${job.id}/clip`, v = $('clip'), out = job.outputs || {};
    const playable = ['mp4', 'webm'].filter(f => out[f]);
    v.classList.toggle('hidden', !playable.length); $('gifclip').classList.toggle('hidden', !!playable.length || !out.gif);
    if (playable.length) {
      v.innerHTML = playable.map(f => `<source src="${u}?format=${f}" type="video/${f}">`).join('');
      v.load(); v.play().catch(() => {});
    } else if (out.gif) $('gifclip').src = `${u}?format=gif`;
    $('downloads').innerHTML = 'Download: ' + Object.keys(out).map(f =>
      `<a id="dl-${esc(f)}" href="${u}?format=${esc(f)}" download>${esc(f.toUpperCase())}${out[f].bytes ? ' (' + mb(out[f].bytes) + ')' : ''}</a>`).join('') +
      `<a id="dl-frames" href="/jobs/${job.id}/frames" download>PNG frames</a>`;
    restyleShow(job);
  }
}
function follow(id, scroll) {
  if (source) source.close();
  current = id; shown = 0; tell(''); $('result').classList.add('hidden'); $('result').dataset.id = '';
  $('preview').classList.add('hidden');
  if (scroll) $('job').scrollIntoView({block: 'start'});  // on a phone the panel is below the form
  source = new EventSource(`/jobs/${id}/events`);
  source.onmessage = e => {
    const job = JSON.parse(e.data); if (job.id !== current) return; show(job);
    if (FINAL.includes(job.state)) { source.close(); source = null; refresh(); }
  };
  source.onerror = () => { if (source) { source.close(); source = null; } setTimeout(() => poll(id), 1000); };
}
async function poll(id) {
  if (id !== current || source) return;
  const r = await fetch(`/jobs/${id}`); if (!r.ok) { tell(detail(await r.json().catch(() => null), r.status)); return; }
  const job = await r.json(); show(job);
  if (!FINAL.includes(job.state)) follow(id);
}
$('cancel').onclick = async () => {
  if (!current) return;
  const r = await fetch(`/jobs/${current}`, {method: 'DELETE'});
  if (!r.ok) tell(detail(await r.json().catch(() => null), r.status));
};
function row(j) {
  const s = j.settings, p = j.preset, names = (j.names || []).join(' → ');
  const img = j.state === 'done' ? `/jobs/${esc(j.id)}/thumb/clip` : `/jobs/${esc(j.id)}/thumb/0`;
  const opts = Object.keys(PRESETS).map(n => `<option value="${esc(n)}">${esc(n)}</option>`).join('');
  const verb = j.state === 'done' ? 'show' : FINAL.includes(j.state) ? 'details' : 'follow';
  return `<img src="${img}" alt=""><div>
    <b>${esc(p.name)}</b>${s.backend === 'svd' ? ' (svd)' : s.backend === 'restyle' ? ' (restyled)' : ''} <span class="state-${esc(j.state)}">${esc(j.state)}</span>
    ${USER.admin && j.owner ? `<span class="meta">by ${esc(j.owner)}</span>` : ''}
    <div class="meta">${names ? esc(names) + ' &middot; ' : ''}${s.backend === 'restyle' ? restyleInfo(s) : `N=${esc(s.num_frames)}, ${esc(s.size)} px, seed ${esc(s.seed)}${s.prompt ? ', &quot;' + esc(s.prompt) + '&quot;' : ''}`}
     &middot; ${esc(new Date(j.created * 1000).toLocaleString())}${j.duration != null ? ' &middot; took ' + esc(fmtTime(j.duration)) : ''}
     ${j.error ? '&middot; ' + esc(j.error) : ''}</div>
    <div class="acts"><a href="#" class="open act">${verb}</a>
    ${j.state === 'done' && s.backend !== 'restyle' ? `&middot; render again with <select class="again-preset" aria-label="preset">${opts}</select>
     <button class="again">Go</button>` : ''}</div></div>`;
}
async function refresh() {
  let jobs;
  try { const r = await fetch('/jobs'); if (!r.ok) { say(detail(null, r.status)); return; } jobs = await r.json(); }
  catch (e) { return; }
  const q = jobs.filter(j => j.state === 'queued' || j.state === 'running').reverse();
  $('queue').innerHTML = q.length ? q.map(j => `<li class="meta"><a href="#" class="act" data-id="${esc(j.id)}">${esc(label(j))}</a>
    ${j.state === 'queued' ? `queued, position ${esc(j.position || '?')}` : `running: ${esc(j.stage)} ${Math.round(100 * j.progress)}%`}</li>`).join('')
    : '<li class="meta">empty</li>';
  $('queue').querySelectorAll('a[data-id]').forEach(a => a.onclick = e => { e.preventDefault(); follow(a.dataset.id, true); });
  // Rows are kept by job id and replaced only when their job changed, so a menu being used keeps its choice.
  const list = $('history'), keep = new Map([...list.querySelectorAll('li.hist')].map(li => [li.dataset.id, li]));
  list.querySelectorAll('li.none').forEach(li => li.remove());
  jobs.forEach((j, i) => {
    const snap = JSON.stringify([j.state, j.stage, Math.round(100 * j.progress), j.error, j.duration]);
    let li = keep.get(j.id);
    if (!li || li.dataset.snap !== snap) {
      const chosen = li && li.querySelector('.again-preset') ? li.querySelector('.again-preset').value : null;
      const fresh = document.createElement('li');
      fresh.className = 'hist'; fresh.dataset.id = j.id; fresh.dataset.state = j.state; fresh.dataset.snap = snap;
      fresh.innerHTML = row(j);
      const sel = fresh.querySelector('.again-preset'); if (sel && chosen) sel.value = chosen;
      fresh.querySelector('.open').onclick = e => { e.preventDefault(); follow(j.id, true); };
      const go = fresh.querySelector('.again'); if (go) go.onclick = () => again(j.id, sel.value);
      if (li) li.replaceWith(fresh); li = fresh;
    }
    keep.delete(j.id);
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
  });
  keep.forEach(li => li.remove());
  if (!jobs.length && !list.children.length) list.innerHTML = '<li class="meta none">no clips yet</li>';
}
restyleWire(); refresh(); setInterval(refresh, 5000);
</script></body></html>
"""

from .restyle_page import RESTYLE_CSS, RESTYLE_FORM, RESTYLE_JS, RESTYLE_ORIG  # noqa: E402

PAGE = (PAGE.replace("<!--restyle-css-->", RESTYLE_CSS).replace("<!--restyle-orig-->", RESTYLE_ORIG)
        .replace("<!--restyle-form-->", RESTYLE_FORM).replace("//restyle-js", RESTYLE_JS))
