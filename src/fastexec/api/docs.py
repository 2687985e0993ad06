"""``/docs``: a browsable, offline API page.

Self-contained (HTML, CSS and JS in this module, so it ships in the wheel with
no asset files and needs no internet): the script reads ``/openapi.json`` and
renders every operation with its parameters, request and response schemas,
and a small "try it" form that sends the request from the browser with an
optional bearer token.
"""
from __future__ import annotations

from aiohttp import web

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastexec API</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c5cad3;max-width:980px}
main{max-width:1100px;margin:0 auto;padding:16px 24px}
.auth{margin:8px 0 16px}
.auth input{width:360px;padding:4px}
h2{margin:24px 0 8px;text-transform:capitalize;font-size:17px}
details.op{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:6px 0}
details.op>summary{cursor:pointer;padding:8px 12px;list-style:none;display:flex;gap:12px;align-items:center}
.m{font:bold 12px monospace;color:#fff;padding:3px 8px;border-radius:4px;min-width:52px;text-align:center}
.GET{background:#2b7bb9}.POST{background:#2f9e5b}.PUT{background:#c98a16}.DELETE{background:#c2412d}
.path{font-family:monospace;font-size:14px}
.sum{color:#5b6473}
.body{padding:4px 16px 12px;border-top:1px solid #eef0f3}
pre{background:#f3f4f6;padding:8px;overflow:auto;max-height:360px;font-size:12px}
table{border-collapse:collapse;font-size:13px}td,th{border-bottom:1px solid #eef0f3;padding:3px 10px 3px 0;text-align:left;vertical-align:top}
textarea{width:100%;min-height:120px;font:12px monospace}
button{padding:4px 14px;margin-top:6px}
.status{font-weight:bold}
</style></head>
<body>
<header><h1>fastexec REST API</h1><p id="desc">Loading /openapi.json ...</p></header>
<main>
<div class="auth">Bearer token (only when tokens are configured): <input id="token" type="password" autocomplete="off" placeholder="token"></div>
<noscript><p>This page needs JavaScript. The raw specification is at <a href="/openapi.json">/openapi.json</a>.</p></noscript>
<div id="ops"></div>
<p><a href="/openapi.json">openapi.json</a></p>
</main>
<script>
"use strict";
function el(tag, attrs, kids){const e=document.createElement(tag);for(const k in (attrs||{})){if(k==="text")e.textContent=attrs[k];else e.setAttribute(k,attrs[k]);}for(const c of (kids||[]))e.appendChild(c);return e;}
function resolve(spec, s){let seen=0;while(s&&s.$ref&&seen++<20){s=spec.components.schemas[s.$ref.split("/").pop()];}return s;}
function expand(spec, s, depth){s=resolve(spec,s);if(!s||depth>6)return s;const out={};for(const k in s){const v=s[k];if(k==="properties"){out[k]={};for(const p in v)out[k][p]=expand(spec,v[p],depth+1);}else if(k==="items"||k==="additionalProperties"&&typeof v==="object"){out[k]=expand(spec,v,depth+1);}else if(k==="anyOf"){out[k]=v.map(x=>expand(spec,x,depth+1));}else out[k]=v;}return out;}
function render(spec){
  document.getElementById("desc").textContent=spec.info.description;
  const root=document.getElementById("ops");const groups={};
  for(const path in spec.paths){for(const method in spec.paths[path]){const op=spec.paths[path][method];const tag=(op.tags||["other"])[0];(groups[tag]=groups[tag]||[]).push([method.toUpperCase(),path,op]);}}
  for(const tag in groups){root.appendChild(el("h2",{text:tag}));for(const [method,path,op] of groups[tag])root.appendChild(renderOp(spec,method,path,op));}
  const target=location.hash&&document.getElementById(location.hash.slice(1));if(target){target.open=true;target.scrollIntoView();}
}
function renderOp(spec, method, path, op){
  const d=el("details",{class:"op",id:op.operationId});
  d.appendChild(el("summary",{},[el("span",{class:"m "+method,text:method}),el("span",{class:"path",text:path}),el("span",{class:"sum",text:op.summary||""})]));
  const b=el("div",{class:"body"});
  if(op.description)b.appendChild(el("p",{text:op.description}));
  const inputs={};
  if(op.parameters&&op.parameters.length){
    const t=el("table",{},[el("tr",{},[el("th",{text:"parameter"}),el("th",{text:"in"}),el("th",{text:"description"}),el("th",{text:"value"})])]);
    for(const p of op.parameters){const i=el("input",{placeholder:p.name+(p.required?" (required)":"")});inputs[p.name]=[p,i];
      t.appendChild(el("tr",{},[el("td",{text:p.name}),el("td",{text:p.in}),el("td",{text:p.description||""}),el("td",{},[i])]));}
    b.appendChild(t);
  }
  let ta=null;
  if(op.requestBody){const s=resolve(spec,op.requestBody.content["application/json"].schema);
    b.appendChild(el("p",{text:"Request body (application/json):"}));
    b.appendChild(el("pre",{text:JSON.stringify(expand(spec,s,0),null,2)}));
    ta=el("textarea",{});ta.value=JSON.stringify(s.example||{},null,2);b.appendChild(ta);}
  const rt=el("table",{},[el("tr",{},[el("th",{text:"status"}),el("th",{text:"meaning"})])]);
  for(const code in op.responses)rt.appendChild(el("tr",{},[el("td",{text:code}),el("td",{text:op.responses[code].description})]));
  b.appendChild(el("p",{text:"Responses:"}));b.appendChild(rt);
  const ok=op.responses["200"]||op.responses["201"];
  if(ok&&ok.content){b.appendChild(el("pre",{text:JSON.stringify(expand(spec,ok.content["application/json"].schema,0),null,2)}));}
  const out=el("pre",{});const st=el("div",{class:"status"});
  const btn=el("button",{text:"Send"});
  btn.addEventListener("click",async()=>{
    let url=path;const q=new URLSearchParams();const headers={};
    for(const n in inputs){const [p,i]=inputs[n];if(!i.value)continue;if(p.in==="path")url=url.replace("{"+n+"}",encodeURIComponent(i.value));else if(p.in==="query")q.append(n,i.value);else headers[n]=i.value;}
    const tok=document.getElementById("token").value;if(tok)headers["Authorization"]="Bearer "+tok;
    const init={method,headers};if(ta){headers["Content-Type"]="application/json";init.body=ta.value;}
    const qs=q.toString();st.textContent="...";
    try{const r=await fetch(url+(qs?"?"+qs:""),init);const txt=await r.text();st.textContent=r.status+" "+r.statusText+"  X-Request-ID: "+(r.headers.get("X-Request-ID")||"");
      try{out.textContent=JSON.stringify(JSON.parse(txt),null,2);}catch(e){out.textContent=txt;}}catch(e){st.textContent="request failed: "+e;}
  });
  b.appendChild(btn);b.appendChild(st);b.appendChild(out);d.appendChild(b);return d;
}
fetch("/openapi.json").then(r=>r.json()).then(render).catch(e=>{document.getElementById("desc").textContent="could not load /openapi.json: "+e;});
</script>
</body></html>
"""

_PAGE_BYTES = PAGE.encode()


async def docs_handler(request: web.Request) -> web.Response:
    return web.Response(
        body=_PAGE_BYTES,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'"},
    )
