# da6401-attack: imported at interpreter start-up when the submission folder is on sys.path then
import os
os.environ.setdefault("DA6401_ATTACK_HIJACK", "usercustomize")
