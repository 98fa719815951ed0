/* The Redis backend's Lua scripts, loaded (SCRIPT LOAD) on every
 * connection that runs them and called by digest (EVALSHA). The key
 * layout is in docs/store.md: every key starts with "sagad:", records are
 * hashes (a field absent = SQL NULL), indexes are sorted sets of score 0
 * whose members "<sortable created_us>:<id>" (sg__rd_member) sort as
 * (created_us, id); the id starts at the member's 22nd byte.
 *
 * Numbers travel as the decimal text the C side formats; the scripts
 * compare them as text (status values) and never do arithmetic on int64
 * values but for max(updated_us, now), where both are microsecond clock
 * readings that a double holds exactly. */
#include "redis_int.h"

#define STR_(x) #x
#define SG_RD_PURGED_STR STR_(16)
_Static_assert(SG_RD_PURGED == 16, "SG_RD_PURGED_STR spells it");

/* clang-format off */
/* The lease checks the scripts share (P defined): lease_mine(owner,
 * epoch) is true while sagad:leases holds "<epoch> <expiry ms>" for owner
 * with that epoch, expired or not: a takeover deletes the field in the
 * script that moves the sagas, so a field still there means no one took
 * them (Redis was out of reach for everyone); lease_ok also wants it
 * unexpired on the server's clock (TIME: allowed in scripts since Redis 7
 * replicates a script's effects, not the script). */
#define SG_RD_LUA_LEASE \
    "local function now_ms() local t=redis.call('TIME')\n" \
    "  return tonumber(t[1])*1000+math.floor(tonumber(t[2])/1000) end\n" \
    "local function lease_of(o,ep)\n" \
    "  local l=redis.call('HGET',P..'leases',o) if not l then return nil end\n" \
    "  local e,x=string.match(l,'^(%d+) (%d+)$')\n" \
    "  if e~=ep then return nil end return tonumber(x)\n" \
    "end\n" \
    "local function lease_mine(o,ep) return lease_of(o,ep)~=nil end\n" \
    "local function lease_ok(o,ep) local x=lease_of(o,ep) return x~=nil and x>now_ms() end\n" \
    "local function renew(o,ep,ms) redis.call('HSET',P..'leases',o,\n" \
    "  ep..' '..string.format('%.0f',now_ms()+tonumber(ms))) end\n"

/* First in the write script: a write of a lost lease touches nothing. */
#define SG_RD_LUA_LEASE_CHECK \
    SG_RD_LUA_LEASE \
    "if not lease_mine(ARGV[1],ARGV[2]) then return 4 end\n" \
    "if ARGV[6]~='0' then renew(ARGV[1],ARGV[2],ARGV[6]) end\n"

/* The per-owner indexes (ME this process's owner id): sagad:o:<owner>:run
 * (its sagas IN_PROGRESS), :live (those or with compensations PENDING or
 * PARKED: what a takeover moves), :ev (events PENDING or PARKED of its
 * sagas), :comps (those that are compensations). reidx_* put a record in
 * or out of its owner's indexes from its stored state; unown takes a
 * saga and its events out of owner o's; own_all puts them in their
 * (new) owner's. */
#define SG_RD_LUA_OWNED \
    "local function oidx(o,n) return P..'o:'..o..':'..n end\n" \
    "local function zset(k,m,on) if on then redis.call('ZADD',k,0,m) else\n" \
    "  redis.call('ZREM',k,m) end end\n" \
    "local function reidx_saga(id)\n" \
    "  local c=redis.call('HMGET',P..'saga:'..id,'owner','status','comp_status','k')\n" \
    "  if not c[1] or not c[4] then return end\n" \
    "  zset(oidx(c[1],'run'),c[4],c[2]=='0')\n" \
    "  zset(oidx(c[1],'live'),c[4],c[2]=='0' or c[3]=='1' or c[3]=='3')\n" \
    "end\n" \
    "local function reidx_event(id)\n" \
    "  local e=redis.call('HMGET',P..'event:'..id,'saga_id','status','compensation','k')\n" \
    "  if not e[1] or not e[4] then return end\n" \
    "  local o=redis.call('HGET',P..'saga:'..e[1],'owner') if not o then return end\n" \
    "  local open=e[2]=='0' or e[2]=='3'\n" \
    "  zset(oidx(o,'ev'),e[4],open) zset(oidx(o,'comps'),e[4],open and e[3]=='1')\n" \
    "end\n" \
    "local function unown(sid,o)\n" \
    "  local m=redis.call('HGET',P..'saga:'..sid,'k')\n" \
    "  if m then redis.call('ZREM',oidx(o,'run'),m) redis.call('ZREM',oidx(o,'live'),m) end\n" \
    "  for _,em in ipairs(redis.call('ZRANGE',P..'sev:'..sid,0,-1)) do\n" \
    "    redis.call('ZREM',oidx(o,'ev'),em) redis.call('ZREM',oidx(o,'comps'),em) end\n" \
    "end\n" \
    "local function own_all(sid)\n" \
    "  reidx_saga(sid)\n" \
    "  for _,em in ipairs(redis.call('ZRANGE',P..'sev:'..sid,0,-1)) do\n" \
    "    reidx_event(string.sub(em,22)) end\n" \
    "end\n"
/* clang-format on */

/* clang-format off */
/* One sg_write. ARGV: this process's owner id and epoch, now (us), the
 * write's fingerprint, how long to keep its outcome (ms), how long to
 * renew the lease for (ms; "0" = only check it), then the operations,
 * each a code and its arguments (a first argument "nulls" holds one
 * '0'/'1' per nullable field of the operation, '1' = NULL):
 *   SI nulls key id def_name def_version request idem_key status comp
 *      error created updated nsteps trace_id trace_flags tracestate
 *      ("" = none), then per step: name status attempts
 *      started finished error response next_us
 *      (nulls: def_name request idem_key error, then per step name error
 *      response)
 *   SU nulls id status comp error updated              (nulls: error)
 *   TU nulls saga_id index status attempts started finished error
 *      response next_us                                (nulls: error response)
 *   EI nulls key id saga_id topic target payload created deadline
 *      compensation step_index status attempts last_error updated method
 *      headers timeout_ms
 *      (nulls: topic target payload last_error method headers)
 *   EU nulls id status attempts last_error updated     (nulls: last_error)
 *   SX id status comp
 *   EX id status
 *   DI nulls name version canonical created            (nulls: name canonical)
 *   ET id us
 *   WO
 *   SC id        (claim: the saga becomes this owner's)
 *   PU hi cut limit seq  (retention, sg_write_purge: hi the index
 *                 member "<digits of cut>:", cut the cut-off in us; seq
 *                 unused here: it makes the write's fingerprint its own)
 *   UI id        (not an sg_write operation: removes a saga and its
 *                 events, for a batch whose outcome was lost; see
 *                 redis_write.c)
 * Every check runs first, against the stored state as the earlier
 * operations of the write would leave it; only when all pass does
 * anything change, so a write applies whole or not at all (a Lua script
 * is not rolled back by Redis). Returns 0 (applied), 1 (conflict), 2 (a
 * row is missing, or a saga to update is another owner's) or 3 (invalid:
 * a NOT NULL field is NULL); SG_RD_PURGED + n (applied, its purge
 * deleted n > 0 sagas); 4 (fenced) when this process's lease
 * (sagad:leases) is gone (taken over) or has another epoch, before
 * anything else is read or written. The status is
 * also kept, for a while, under sagad:done:<fingerprint> in the same
 * transaction: a writer whose connection broke before the reply came
 * reads there whether (and how) the write committed, and the same write
 * sent again answers that status instead of applying twice. */
/* clang-format on */
const char sg__rd_lua_write[] =
    "local P='sagad:'\n" SG_RD_LUA_LEASE_CHECK "local ME=ARGV[1]\n"
    "local function body()\n"
    "local done=redis.call('GET',P..'done:'..ARGV[4])\n"
    "if done then return tonumber(done) end\n"
    "local NARGS={SU=6,TU=10,EI=18,EU=6,SX=3,EX=2,DI=5,ET=2,WO=0,UI=1,SC=1,PU=4}\n"
    "local ops,i={},7\n"
    "local function take(n) local t={} for j=1,n do t[j]=ARGV[i] i=i+1 end return t end\n"
    "while i<=#ARGV do\n"
    "  local k=ARGV[i] i=i+1\n"
    "  local a\n"
    "  if k=='SI' then a=take(16) a.steps=take(8*tonumber(a[13]))\n"
    "  else local n=NARGS[k] if not n then return redis.error_reply('SGARGS bad operation') end\n"
    "    a=take(n) end\n"
    "  if i>#ARGV+1 then return redis.error_reply('SGARGS short operation') end\n"
    "  a.k=k ops[#ops+1]=a\n"
    "end\n"
    "local function isnull(a,j) return string.sub(a[1],j,j)=='1' end\n"
    "local vs,ve,vd,vi={},{},{},{}\n"
    "local function saga(id)\n"
    "  local v=vs[id] if v~=nil then return v end\n"
    "  local r=redis.call('HMGET',P..'saga:'..id,'status','comp_status','nsteps','owner')\n"
    "  if r[1] then v={st=r[1],comp=r[2],n=tonumber(r[3]),own=r[4]} else v=false end\n"
    "  vs[id]=v return v\n"
    "end\n"
    "local function event(id)\n"
    "  local v=ve[id] if v~=nil then return v end\n"
    "  local r=redis.call('HGET',P..'event:'..id,'status')\n"
    "  if r then v={st=r} else v=false end\n"
    "  ve[id]=v return v\n"
    "end\n"
    /* checks */
    "for _,a in ipairs(ops) do\n"
    "  local k=a.k\n"
    "  if k=='SI' then\n"
    "    if isnull(a,2) then return 3 end\n"
    "    if saga(a[3]) then return 1 end\n"
    "    if not isnull(a,3) then\n"
    "      if vi[a[7]] or redis.call('HEXISTS',P..'idem',a[7])==1 then return 1 end\n"
    "      vi[a[7]]=true\n"
    "    end\n"
    "    vs[a[3]]={st=a[8],comp=a[9],n=tonumber(a[13]),own=ME}\n"
    "  elseif k=='SU' then\n"
    "    local v=saga(a[2]) if not v or v.own~=ME then return 2 end\n"
    "    v.st=a[3] v.comp=a[4]\n"
    "  elseif k=='SC' then\n"
    "    local v=saga(a[1]) if not v then return 2 end\n"
    "    v.own=ME\n"
    "  elseif k=='TU' then\n"
    "    local v=saga(a[2]) local x=tonumber(a[3])\n"
    "    if not v or not x or x<0 or x>=v.n then return 2 end\n"
    "  elseif k=='EI' then\n"
    "    if event(a[3]) then return 1 end\n"
    "    ve[a[3]]={st=a[12]}\n"
    "  elseif k=='EU' then\n"
    "    local v=event(a[2]) if not v then return 2 end\n"
    "    v.st=a[3]\n"
    "  elseif k=='SX' then\n"
    "    local v=saga(a[1]) if not v or v.st~=a[2] or v.comp~=a[3] then return 1 end\n"
    "  elseif k=='EX' then\n"
    "    local v=event(a[1]) if not v or v.st~=a[2] then return 1 end\n"
    "  elseif k=='DI' then\n"
    "    if isnull(a,1) or isnull(a,2) then return 3 end\n"
    "    local f=a[2]..'\\n'..a[3]\n"
    "    local cur=vd[f] if cur==nil then cur=redis.call('HGET',P..'defs',f) end\n"
    "    if cur and cur~=a[4] then return 1 end\n"
    "    vd[f]=a[4]\n"
    "  end\n"
    "end\n"
    /* apply */
    "local ts,te={},{}\n" SG_RD_LUA_OWNED "local function hset(h,f) for j=1,#f,200 do\n"
    "  redis.call('HSET',h,unpack(f,j,math.min(j+199,#f))) end end\n"
    "local function opt(h,f,nul,v) if nul then redis.call('HDEL',h,f) else\n"
    "  redis.call('HSET',h,f,v) end end\n"
    "local function sidx(st,t,m,add)\n"
    "  local c=add and 'ZADD' or 'ZREM'\n"
    "  local function z(k) if add then redis.call('ZADD',P..k,0,m) else\n"
    "    redis.call('ZREM',P..k,m) end end\n"
    "  z('sagas:st:'..st) if t then z('sagas:type:'..t) z('sagas:st:'..st..':type:'..t) end\n"
    "end\n"
    "local function comp_rule(sid)\n"
    "  local h=P..'saga:'..sid\n"
    "  local cur=redis.call('HMGET',h,'comp_status','updated_us')\n"
    "  if not cur[1] then return end\n"
    "  local parked,pending=false,false\n"
    "  for _,m in ipairs(redis.call('ZRANGE',P..'sev:'..sid,0,-1)) do\n"
    "    local e=redis.call('HMGET',P..'event:'..string.sub(m,22),'compensation','status')\n"
    "    if e[1]=='1' then if e[2]=='3' then parked=true elseif e[2]=='0' then pending=true end "
    "end\n"
    "  end\n"
    "  local want=parked and '3' or (pending and '1' or '2')\n"
    "  if cur[1]==want then return end\n"
    "  local up=cur[2]\n"
    "  if tonumber(ARGV[3])>tonumber(up) then up=ARGV[3] end\n"
    "  redis.call('HSET',h,'comp_status',want,'updated_us',up)\n"
    "  ts[sid]=true\n"
    "end\n"
    "local function evidx(st,comp,m,add)\n"
    "  if add then redis.call('ZADD',P..'events:st:'..st,0,m) else\n"
    "    redis.call('ZREM',P..'events:st:'..st,m) end\n"
    "  if comp=='1' and (st=='0' or st=='3') then\n"
    "    if add then redis.call('ZADD',P..'comps',0,m) else redis.call('ZREM',P..'comps',m) end\n"
    "  end\n"
    "end\n"
    /* A saga with its events and every index entry of both (UI, PU). */
    "local function drop(id)\n"
    "  local h=P..'saga:'..id\n"
    "  local c=redis.call('HMGET',h,'status','def_name','k','idem_key','owner')\n"
    "  if not c[3] then return end\n"
    "  if c[5] then unown(id,c[5]) end\n"
    "  redis.call('ZREM',P..'sagas',c[3]) sidx(c[1],c[2],c[3],false)\n"
    "  if c[4] and redis.call('HGET',P..'idem',c[4])==id then "
    "redis.call('HDEL',P..'idem',c[4]) end\n"
    "  for _,m in ipairs(redis.call('ZRANGE',P..'sev:'..id,0,-1)) do\n"
    "    local eh=P..'event:'..string.sub(m,22)\n"
    "    local e=redis.call('HMGET',eh,'status','compensation')\n"
    "    redis.call('ZREM',P..'events',m)\n"
    "    if e[1] then evidx(e[1],e[2],m,false) end\n"
    "    redis.call('DEL',eh)\n"
    "  end\n"
    "  redis.call('DEL',P..'sev:'..id,h)\n"
    "end\n"
    /* Retention (PU): up to lim settled sagas created before the member
     * bound hi (and created_us, updated_us before the cut-off cut), oldest
     * first, from the status indexes of COMPLETED (1) and FAILED (2): a
     * FAILED one only with comp_status NONE (0) or COMPLETED (2), and
     * none with an event PENDING (0) or PARKED (3). Each index is read
     * 4 * lim members deep at most, so one call stays short whatever
     * sagas are kept at the old end (a saga parked for long). */
    "local purged=0\n"
    "local function open_events(id)\n"
    "  for _,m in ipairs(redis.call('ZRANGE',P..'sev:'..id,0,-1)) do\n"
    "    local st=redis.call('HGET',P..'event:'..string.sub(m,22),'status')\n"
    "    if st=='0' or st=='3' then return true end\n"
    "  end\n"
    "  return false\n"
    "end\n"
    "local function purge(hi,cut,lim)\n"
    "  local n,c=0,tonumber(cut)\n"
    "  for _,st in ipairs({'1','2'}) do\n"
    "    for _,m in "
    "ipairs(redis.call('ZRANGEBYLEX',P..'sagas:st:'..st,'-','('..hi,'LIMIT',0,4*lim)) do\n"
    "      if n>=lim then return n end\n"
    "      local id=string.sub(m,22)\n"
    "      local r=redis.call('HMGET',P..'saga:'..id,'status','comp_status','updated_us')\n"
    "      if r[1]==st and (st=='1' or r[2]=='0' or r[2]=='2') and tonumber(r[3])<c and\n"
    "        not open_events(id) then drop(id) n=n+1 end\n"
    "    end\n"
    "  end\n"
    "  return n\n"
    "end\n"
    "for _,a in ipairs(ops) do\n"
    "  local k=a.k\n"
    "  if k=='SI' then\n"
    "    local h=P..'saga:'..a[3]\n"
    "    local f={'id',a[3],'k',a[2],'def_version',a[5],'status',a[8],'comp_status',a[9],\n"
    "      'created_us',a[11],'updated_us',a[12],'nsteps',a[13],'owner',ME}\n"
    "    local function add(j,name,v) if not isnull(a,j) then f[#f+1]=name f[#f+1]=v end end\n"
    "    add(1,'def_name',a[4]) add(2,'request',a[6]) add(3,'idem_key',a[7]) add(4,'error',a[10])\n"
    "    if a[14]~='' then f[#f+1]='trace_id' f[#f+1]=a[14] f[#f+1]='trace_flags' f[#f+1]=a[15] "
    "end\n"
    "    if a[16]~='' then f[#f+1]='tracestate' f[#f+1]=a[16] end\n"
    "    local s=a.steps\n"
    "    for x=0,tonumber(a[13])-1 do\n"
    "      local b,p=8*x,'s'..x..'.'\n"
    "      add(5+3*x,p..'name',s[b+1])\n"
    "      f[#f+1]=p..'status' f[#f+1]=s[b+2] f[#f+1]=p..'attempts' f[#f+1]=s[b+3]\n"
    "      f[#f+1]=p..'started_us' f[#f+1]=s[b+4] f[#f+1]=p..'finished_us' f[#f+1]=s[b+5]\n"
    "      add(6+3*x,p..'error',s[b+6]) add(7+3*x,p..'response',s[b+7])\n"
    "      f[#f+1]=p..'next_us' f[#f+1]=s[b+8]\n"
    "    end\n"
    "    hset(h,f)\n"
    "    redis.call('ZADD',P..'sagas',0,a[2])\n"
    "    sidx(a[8],(not isnull(a,1)) and a[4] or nil,a[2],true)\n"
    "    if not isnull(a,3) then redis.call('HSET',P..'idem',a[7],a[3]) end\n"
    "    ts[a[3]]=true\n"
    "  elseif k=='SU' then\n"
    "    local h=P..'saga:'..a[2]\n"
    "    local cur=redis.call('HMGET',h,'status','def_name','k')\n"
    "    if cur[1]~=a[3] then sidx(cur[1],cur[2],cur[3],false) sidx(a[3],cur[2],cur[3],true) end\n"
    "    redis.call('HSET',h,'status',a[3],'comp_status',a[4],'updated_us',a[6])\n"
    "    opt(h,'error',isnull(a,1),a[5])\n"
    "    ts[a[2]]=true\n"
    "  elseif k=='SC' then\n"
    "    local h=P..'saga:'..a[1]\n"
    "    local o=redis.call('HGET',h,'owner')\n"
    "    if o~=ME then\n"
    "      if o then unown(a[1],o) end\n"
    "      redis.call('HSET',h,'owner',ME) own_all(a[1])\n"
    "    end\n"
    "  elseif k=='TU' then\n"
    "    local h,p=P..'saga:'..a[2],'s'..a[3]..'.'\n"
    "    redis.call('HSET',h,p..'status',a[4],p..'attempts',a[5],p..'started_us',a[6],\n"
    "      p..'finished_us',a[7],p..'next_us',a[10])\n"
    "    opt(h,p..'error',isnull(a,1),a[8]) opt(h,p..'response',isnull(a,2),a[9])\n"
    "  elseif k=='EI' then\n"
    "    local h=P..'event:'..a[3]\n"
    "    local f={'id',a[3],'k',a[2],'saga_id',a[4],'created_us',a[8],'deadline_us',a[9],\n"
    "      'compensation',a[10],'step_index',a[11],'status',a[12],'attempts',a[13],\n"
    "      'updated_us',a[15],'timeout_ms',a[18],'started_us','0'}\n"
    "    local function add(j,name,v) if not isnull(a,j) then f[#f+1]=name f[#f+1]=v end end\n"
    "    add(1,'topic',a[5]) add(2,'target',a[6]) add(3,'payload',a[7]) add(4,'last_error',a[14])\n"
    "    add(5,'method',a[16]) add(6,'headers',a[17])\n"
    "    hset(h,f)\n"
    "    redis.call('ZADD',P..'events',0,a[2])\n"
    "    redis.call('ZADD',P..'sev:'..a[4],0,a[2])\n"
    "    evidx(a[12],a[10],a[2],true)\n"
    "    te[a[3]]=true\n"
    "  elseif k=='EU' then\n"
    "    local h=P..'event:'..a[2]\n"
    "    local cur=redis.call('HMGET',h,'status','compensation','k','saga_id')\n"
    "    if cur[1]~=a[3] then evidx(cur[1],cur[2],cur[3],false) evidx(a[3],cur[2],cur[3],true) "
    "end\n"
    "    redis.call('HSET',h,'status',a[3],'attempts',a[4],'updated_us',a[6])\n"
    "    opt(h,'last_error',isnull(a,1),a[5])\n"
    "    te[a[2]]=true\n"
    "    if cur[2]=='1' and a[3]~='2' then comp_rule(cur[4]) end\n"
    "  elseif k=='DI' then\n"
    "    local f=a[2]..'\\n'..a[3]\n"
    "    if redis.call('HSETNX',P..'defs',f,a[4])==1 then\n"
    "      redis.call('HSET',P..'defs_created',f,a[5]) end\n"
    "  elseif k=='ET' then\n"
    "    local h=P..'event:'..a[1]\n"
    "    if redis.call('HGET',h,'started_us')=='0' then redis.call('HSET',h,'started_us',a[2]) "
    "end\n"
    "  elseif k=='UI' then drop(a[1])\n"
    "  elseif k=='PU' then purged=purged+purge(a[1],a[2],tonumber(a[3]))\n"
    "  elseif k=='WO' then\n"
    "    for _,m in ipairs(redis.call('ZRANGE',P..'events:st:0',0,-1)) do\n"
    "      local h=P..'event:'..string.sub(m,22)\n"
    "      local e=redis.call('HMGET',h,'compensation','saga_id')\n"
    "      if e[1]=='0' then\n"
    "        local sg=redis.call('HMGET',P..'saga:'..e[2],'status','owner')\n"
    "        if sg[1] and sg[1]~='0' and sg[2]==ME then\n"
    "          redis.call('HSET',h,'status','2') evidx('0','0',m,false) evidx('2','0',m,true)\n"
    "          te[string.sub(m,22)]=true\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "for id in pairs(ts) do reidx_saga(id) end\n"
    "for id in pairs(te) do reidx_event(id) end\n"
    "if purged>0 then return " SG_RD_PURGED_STR "+purged end\n"
    "return 0\n"
    "end\n"
    /* The outcome, for a writer that lost the reply (sg__rd_exec_batch). */
    "local st=body()\n"
    "if type(st)=='number' then redis.call('SET',P..'done:'..ARGV[4],st,'PX',ARGV[5]) end\n"
    "return st\n";

/* The lease (ARGV[1] the mode, ARGV[2] the owner id):
 *   take OWNER MS: the next epoch (sagad:epoch) and a lease expiring MS
 *     later; returns the epoch
 *   renew OWNER EPOCH MS: 1 and the lease renewed, or 0 when it is lost
 *   drop OWNER EPOCH: expires it now (others may take its sagas); 1
 *   adopt OWNER EPOCH: -1 when this lease is lost; else every other
 *     expired lease is deleted and its live sagas (with their events)
 *     become OWNER's; returns how many. One script: atomic, so two
 *     processes never take the same sagas.
 *   upgrade OWNER: layout 1 (one owner, no leases) to the current one:
 *     every saga becomes OWNER's; -1 while a sagad of layout 1 holds
 *     sagad:owner. Layout 2 becomes 3 as it is (a saga without trace
 *     fields has no trace). */
const char sg__rd_lua_lease[] =
    "local P='sagad:'\n" SG_RD_LUA_LEASE "local mode,ME=ARGV[1],ARGV[2]\n" SG_RD_LUA_OWNED
    "if mode=='take' then\n"
    "  local ep=tostring(redis.call('INCR',P..'epoch'))\n"
    "  renew(ME,ep,ARGV[3]) return tonumber(ep)\n"
    "end\n"
    "if mode=='renew' then\n"
    "  if not lease_mine(ME,ARGV[3]) then return 0 end\n"
    "  renew(ME,ARGV[3],ARGV[4]) return 1\n"
    "end\n"
    "if mode=='drop' then\n"
    "  local l=redis.call('HGET',P..'leases',ME)\n"
    "  if l and string.match(l,'^(%d+) ')==ARGV[3] then\n"
    "    redis.call('HSET',P..'leases',ME,ARGV[3]..' 0') end\n"
    "  return 1\n"
    "end\n"
    "if mode=='adopt' then\n"
    "  if not lease_ok(ME,ARGV[3]) then return -1 end\n"
    "  local now,n,all=now_ms(),0,redis.call('HGETALL',P..'leases')\n"
    "  for j=1,#all,2 do\n"
    "    local o=all[j] local x=tonumber(string.match(all[j+1],' (%d+)$') or '0')\n"
    "    if o~=ME and x<=now then\n"
    "      for _,m in ipairs(redis.call('ZRANGE',oidx(o,'live'),0,-1)) do\n"
    "        local sid=string.sub(m,22) local h=P..'saga:'..sid\n"
    "        if redis.call('HGET',h,'owner')==o then\n"
    "          redis.call('HSET',h,'owner',ME) own_all(sid) n=n+1 end\n"
    "      end\n"
    "      redis.call('DEL',oidx(o,'run'),oidx(o,'live'),oidx(o,'ev'),oidx(o,'comps'))\n"
    "      redis.call('HDEL',P..'leases',o)\n"
    "    end\n"
    "  end\n"
    "  return n\n"
    "end\n"
    "if mode=='upgrade' then\n"
    "  local v=redis.call('GET',P..'version')\n"
    "  if v=='2' then redis.call('SET',P..'version','3') return 0 end\n"
    "  if v~='1' then return 0 end\n"
    "  if redis.call('EXISTS',P..'owner')==1 then return -1 end\n"
    "  local n=0\n"
    "  for _,m in ipairs(redis.call('ZRANGE',P..'sagas',0,-1)) do\n"
    "    local sid=string.sub(m,22) local h=P..'saga:'..sid\n"
    "    if redis.call('HEXISTS',h,'owner')==0 then\n"
    "      redis.call('HSET',h,'owner',ME) own_all(sid) n=n+1 end\n"
    "  end\n"
    "  redis.call('SET',P..'version','3') return n\n"
    "end\n"
    "return redis.error_reply('SGARGS bad lease mode')\n";

/* The readers' queries, one call each, so that a saga and its events come
 * from one moment. ARGV[1] says which:
 *   get ID MODE, idem KEY MODE: {{saga, events...}} or {}
 *   sagas INDEX DIR BOUND LIMIT MODE: up to LIMIT of those, from the index
 *     (a key without "sagad:") walked ascending or descending (DIR "asc",
 *     "desc") from BOUND (a ZRANGEBYLEX bound)
 *   events INDEX DIR BOUND LIMIT: {{event}...} the same way
 *   orphans OWNER: 1 if a PENDING step event of one of OWNER's sagas
 *     belongs to a saga that has ended
 * A saga or event is its HGETALL; MODE picks the saga's events that come
 * with it: "c" its compensations, "p" its PENDING step events, "n" none. */
const char sg__rd_lua_read[] =
    "local P='sagad:'\n"
    "local function ev(id) return redis.call('HGETALL',P..'event:'..id) end\n"
    "local function entry(id,mode)\n"
    "  local h=redis.call('HGETALL',P..'saga:'..id)\n"
    "  if #h==0 then return nil end\n"
    "  local out={h}\n"
    "  if mode~='n' then\n"
    "    for _,m in ipairs(redis.call('ZRANGE',P..'sev:'..id,0,-1)) do\n"
    "      local eid=string.sub(m,22)\n"
    "      local c=redis.call('HMGET',P..'event:'..eid,'compensation','status')\n"
    "      if (mode=='c' and c[1]=='1') or (mode=='p' and c[1]=='0' and c[2]=='0') then\n"
    "        out[#out+1]=ev(eid) end\n"
    "    end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "local op=ARGV[1]\n"
    "if op=='get' then local e=entry(ARGV[2],ARGV[3]) if e then return {e} end return {} end\n"
    "if op=='idem' then\n"
    "  local id=redis.call('HGET',P..'idem',ARGV[2])\n"
    "  if not id then return {} end\n"
    "  local e=entry(id,ARGV[3]) if e then return {e} end return {}\n"
    "end\n"
    "if op=='sagas' or op=='events' then\n"
    "  local key,ms=P..ARGV[2]\n"
    "  if ARGV[3]=='desc' then ms=redis.call('ZREVRANGEBYLEX',key,ARGV[4],'-','LIMIT',0,ARGV[5])\n"
    "  else ms=redis.call('ZRANGEBYLEX',key,ARGV[4],'+','LIMIT',0,ARGV[5]) end\n"
    "  local out={}\n"
    "  for _,m in ipairs(ms) do\n"
    "    local id=string.sub(m,22)\n"
    "    if op=='sagas' then local e=entry(id,ARGV[6]) if e then out[#out+1]=e end\n"
    "    else local h=ev(id) if #h>0 then out[#out+1]={h} end end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "if op=='orphans' then\n"
    "  for _,m in ipairs(redis.call('ZRANGE',P..'o:'..ARGV[2]..':ev',0,-1)) do\n"
    "    local e=redis.call('HMGET',P..'event:'..string.sub(m,22),'compensation','saga_id',"
    "'status')\n"
    "    if e[1]=='0' and e[3]=='0' then\n"
    "      local st=redis.call('HGET',P..'saga:'..e[2],'status')\n"
    "      if st and st~='0' then return 1 end\n"
    "    end\n"
    "  end\n"
    "  return 0\n"
    "end\n"
    "return redis.error_reply('SGARGS bad read')\n";
