"""The studio page: server-rendered HTML and a little JS (no build step); talks only to the job API."""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dreammover studio</title>
<style>
:root{--fg:#1d1d1f;--mute:#6e6e73;--line:#d2d2d7;--acc:#0a64d8;--bad:#b3261e}
*{box-sizing:border-box}body{font:15px/1.4 system-ui,sans-serif;color:var(--fg);margin:0;background:#f5f5f7}
header{padding:.8em 1.2em;background:#fff;border-bottom:1px solid var(--line)}h1{font-size:1.2em;margin:0}
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
button{font:inherit;padding:.45em .9em;border-radius:6px;border:1px solid var(--line);background:#fff;cursor:pointer}
button.primary{background:var(--acc);color:#fff;border-color:var(--acc)}
#msg{color:var(--bad);min-height:1.3em;margin:.4em 0}
progress{width:100%;height:14px}.stages{display:flex;flex-wrap:wrap;gap:.3em;margin:.4em 0}
.stages span{font-size:.8em;padding:.1em .5em;border-radius:10px;background:#eee;color:var(--mute)}
.stages span.now{background:var(--acc);color:#fff}.stages span.past{background:#cfe3ff;color:var(--fg)}
#preview,#clip{width:100%;max-height:60vh;object-fit:contain;background:#111;border-radius:6px}
.dl a{margin-right:.6em}
ul{list-style:none;padding:0;margin:0}li.hist{display:grid;grid-template-columns:auto 1fr;gap:.6em;
 padding:.5em 0;border-top:1px solid var(--line)}li.hist img{width:56px;height:56px;object-fit:cover;border-radius:4px}
.meta{font-size:.85em;color:var(--mute)}.state-failed{color:var(--bad)}
.hidden{display:none}
@media (max-width:760px){main{grid-template-columns:minmax(0,1fr);padding:.5em}}
</style></head>
<body><header><h1>dreammover studio</h1></header>
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
  <label>In-between frames <input type="number" id="frames" min="1"></label>
  <label>Size (long side) <input type="number" id="size" min="64" step="64"></label>
  <label>Seed <input type="number" id="seed"></label>
 </div>
 <label>Method <select id="backend"><option value="dreammover">DreamMover (semantic, same subject)</option>
  <option value="svd">SVD keyframes (real motion; Generative Inbetweening)</option></select></label>
 <label>Prompt <input type="text" id="prompt" placeholder="optional"></label>
 <button class="primary" id="go">Make clip</button>
 <div id="msg" role="alert"></div>
 <h2>Queue</h2><ul id="queue"><li class="meta">empty</li></ul>
</section>
<section id="job"><h2>Current job <span id="jobid" class="meta"></span></h2>
 <div id="idle" class="meta">Choose two photos and press "Make clip".</div>
 <div id="live" class="hidden">
  <div class="stages" id="stages"></div>
  <progress id="bar" max="1" value="0"></progress>
  <div class="meta"><span id="stage"></span> &middot; <span id="pct">0%</span> &middot; <span id="eta"></span></div>
  <p><button id="cancel">Cancel</button></p>
  <img id="preview" class="hidden" alt="preview of the middle frame">
 </div>
 <div id="result" class="hidden">
  <video id="clip" loop autoplay muted playsinline controls></video>
  <p class="dl">Download: <a id="dl-mp4" download>MP4</a><a id="dl-webm" download>WebM</a>
   <a id="dl-gif" download>GIF</a><a id="dl-frames" download>PNG frames</a></p>
 </div>
</section>
<section id="past" style="grid-column:1/-1"><h2>History</h2><ul id="history"></ul></section>
</main>
<script>
const PRESETS = __PRESETS__, LIMITS = __LIMITS__, DEFAULTS = __DEFAULTS__, SVD = __SVD__;
const STAGES = ['lora', 'inversion', 'flow', 'denoise', 'decode', 'encoding'];
const SVD_STAGES = ['encode', 'denoise', 'decode', 'encoding'];
const $ = id => document.getElementById(id);
const files = [null, null];
let source = null, current = null, shown = 0;

for (const name in PRESETS) $('preset').add(new Option(describe(name), name));
$('frames').value = DEFAULTS.num_frames; $('frames').max = LIMITS.frames;
if (!SVD) { $('backend').options[1].disabled = true; $('backend').options[1].text += ' (start with --svd-model)'; }
$('backend').onchange = () => { $('prompt').disabled = $('backend').value === 'svd'; };
$('size').value = DEFAULTS.size; $('size').max = LIMITS.size; $('seed').value = DEFAULTS.seed;

function describe(name) {
  const p = PRESETS[name], size = p.width ? `${p.width}x${p.height}` : p.aspect;
  return `${name} (${size}, ${p.loop}, ${p.fps} fps, ${p.format})`;
}
function say(text) { $('msg').textContent = text || ''; }
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
  if (Array.isArray(d)) return d.map(x => x.msg || JSON.stringify(x)).join('; ');
  return `the server answered ${status}`;
}
async function post(url, form) {
  let r;
  try { r = await fetch(url, {method: 'POST', body: form}); }
  catch (e) { say('cannot reach the studio server: is it running?'); return null; }
  const body = await r.json().catch(() => null);
  if (!r.ok) { say(detail(body, r.status)); return null; }
  return body;
}
function settingsForm() {
  const f = new FormData();
  f.append('preset', $('preset').value);
  for (const k of ['frames', 'size', 'seed']) if ($(k).value !== '') f.append(k, $(k).value);
  f.append('backend', $('backend').value);
  if ($('backend').value !== 'svd') f.append('prompt', $('prompt').value);
  return f;
}
$('go').onclick = async () => {
  say('');
  if (!files[0] || !files[1]) { say('Choose two photos first.'); return; }
  for (const [i, f] of files.entries())
    if (f.size > LIMITS.upload_bytes) { say(`Photo ${i + 1} is too large (limit ${LIMITS.upload_bytes / 1e6} MB).`); return; }
  const form = settingsForm(); form.append('image0', files[0]); form.append('image1', files[1]);
  $('go').disabled = true;
  const job = await post('/jobs', form);
  $('go').disabled = false;
  if (job) follow(job.id);
  refresh();
};
async function again(id, preset) {
  const f = new FormData(); f.append('preset', preset); say('');
  const job = await post(`/jobs/${id}/again`, f);
  if (job) follow(job.id);
  refresh();
}
function fmtTime(s) { return s == null ? '' : s < 60 ? `${Math.round(s)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`; }
function show(job) {
  $('idle').classList.add('hidden'); $('jobid').textContent = job.id;
  const running = job.state === 'queued' || job.state === 'running';
  $('live').classList.toggle('hidden', !running);
  $('bar').value = job.progress || 0; $('pct').textContent = `${Math.round(100 * (job.progress || 0))}%`;
  $('stage').textContent = job.state === 'queued' ? `queued (position ${job.position || '?'})` : job.stage;
  $('eta').textContent = job.eta != null && running ? `about ${fmtTime(job.eta)} left` : '';
  const stages = job.settings && job.settings.backend === 'svd' ? SVD_STAGES : STAGES, k = stages.indexOf(job.stage);
  $('stages').innerHTML = stages.map((s, i) => `<span class="${i === k ? 'now' : i < k ? 'past' : ''}">${s}</span>`).join('');
  if (running && job.previews && job.previews !== shown) {  // a new preview was written
    shown = job.previews; const img = $('preview'); img.onload = () => img.classList.remove('hidden');
    img.src = `/jobs/${job.id}/preview?n=${job.previews}`;
  }
  if (job.state === 'done') {
    $('result').classList.remove('hidden');
    const u = `/jobs/${job.id}/clip`, v = $('clip');
    v.innerHTML = `<source src="${u}?format=mp4" type="video/mp4"><source src="${u}?format=webm" type="video/webm">`;
    v.load(); v.play().catch(() => {});
    for (const f of ['mp4', 'webm', 'gif']) $('dl-' + f).href = `${u}?format=${f}`;
    $('dl-frames').href = `/jobs/${job.id}/frames`;
  }
  if (job.state === 'failed') say(`The clip failed: ${job.error || 'unknown error'}`);
  if (job.state === 'cancelled') say('Cancelled.');
}
function follow(id) {
  if (source) source.close();
  current = id; shown = 0; $('result').classList.add('hidden'); $('preview').classList.add('hidden');
  source = new EventSource(`/jobs/${id}/events`);
  source.onmessage = e => {
    const job = JSON.parse(e.data); show(job);
    if (['done', 'failed', 'cancelled'].includes(job.state)) { source.close(); source = null; refresh(); }
  };
  source.onerror = () => { if (source) { source.close(); source = null; } setTimeout(() => poll(id), 1000); };
}
async function poll(id) {
  if (id !== current || source) return;
  const r = await fetch(`/jobs/${id}`); if (!r.ok) return;
  const job = await r.json(); show(job);
  if (!['done', 'failed', 'cancelled'].includes(job.state)) follow(id);
}
$('cancel').onclick = async () => {
  if (!current) return;
  const r = await fetch(`/jobs/${current}`, {method: 'DELETE'});
  if (!r.ok) say(detail(await r.json().catch(() => null), r.status));
};
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'})[c]); }
async function refresh() {
  let jobs;
  try { jobs = await (await fetch('/jobs')).json(); } catch (e) { return; }
  const q = jobs.filter(j => j.state === 'queued' || j.state === 'running').reverse();
  $('queue').innerHTML = q.length ? q.map(j => `<li class="meta">${esc(j.id)}: ${esc(j.state)} ${esc(j.stage)} ${Math.round(100 * j.progress)}%</li>`).join('') : '<li class="meta">empty</li>';
  const opts = Object.keys(PRESETS).map(n => `<option>${esc(n)}</option>`).join('');
  $('history').innerHTML = jobs.map(j => {
    const s = j.settings, p = j.preset;
    const thumbs = j.state === 'done' ? `<img src="/jobs/${j.id}/thumb/clip" alt="">` : `<img src="/jobs/${j.id}/thumb/0" alt="">`;
    return `<li class="hist" data-id="${esc(j.id)}" data-state="${esc(j.state)}">${thumbs}<div>
      <b>${esc(p.name)}</b>${s.backend === 'svd' ? ' (svd)' : ''}
      <span class="state-${esc(j.state)}">${esc(j.state)}</span>
      <div class="meta">N=${s.num_frames}, ${s.size} px, seed ${s.seed}${s.prompt ? ', &quot;' + esc(s.prompt) + '&quot;' : ''}
       &middot; ${new Date(j.created * 1000).toLocaleString()}${j.duration != null ? ' &middot; took ' + fmtTime(j.duration) : ''}
       ${j.error ? '&middot; ' + esc(j.error) : ''}</div>
      ${j.state === 'done' ? `<a href="#" class="open">show</a> &middot; ` : ''}render again with
      <select class="again-preset">${opts}</select> <button class="again">Go</button></div></li>`;
  }).join('') || '<li class="meta">no clips yet</li>';
  document.querySelectorAll('li.hist').forEach(li => {
    const id = li.dataset.id, open = li.querySelector('.open');
    if (open) open.onclick = e => { e.preventDefault(); follow(id); };
    li.querySelector('.again').onclick = () => again(id, li.querySelector('.again-preset').value);
  });
}
refresh(); setInterval(refresh, 5000);
</script></body></html>
"""
