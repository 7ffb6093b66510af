/*
 * PREDICT runs on CPU; PREDICT_GPU is the same step for the torch predictors when --gpu is set
 * (label process_gpu, routed to accelerator nodes by the gpu/slurm/awsbatch profiles).
 */
def predictScript(task, meta, pseudobulk, by_batch, splits, seed, fold, predictor, embedding) {
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}.${predictor}.${embedding ? embedding.name.tokenize('.')[1] : 'none'}.seed${seed}.fold${fold}"
    def emb    = embedding ? "--gene-embedding ${embedding}" : ''
    return """
    predict.py \\
        --pseudobulk ${pseudobulk} \\
        --pseudobulk-by-batch ${by_batch} \\
        --splits ${splits} \\
        --seed ${seed} \\
        --fold ${fold} \\
        --predictor ${predictor} \\
        ${emb} \\
        --dataset ${meta.id} \\
        --out ${prefix}.prediction.parquet \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """
}

def predictStub(task, meta, seed, fold, predictor, embedding) {
    return """
    touch ${meta.id}.${predictor}.${embedding ? embedding.name.tokenize('.')[1] : 'none'}.seed${seed}.fold${fold}.prediction.parquet
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}

process PREDICT {
    tag "${meta.id} ${predictor} ${embedding ? embedding.name.tokenize('.')[1] : ''} seed${seed} fold${fold}"
    label 'process_single'
    container 'ghcr.io/pertprobe/base:0.1.0'

    input:
    tuple val(meta), path(pseudobulk), path(by_batch), path(splits), val(seed), val(fold), val(predictor), path(embedding, stageAs: 'embedding/*')

    output:
    tuple val(meta), path("*.prediction.parquet"), emit: prediction
    path "versions.yml"                          , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    predictScript(task, meta, pseudobulk, by_batch, splits, seed, fold, predictor, embedding)

    stub:
    predictStub(task, meta, seed, fold, predictor, embedding)
}

process PREDICT_GPU {
    tag "${meta.id} ${predictor} ${embedding ? embedding.name.tokenize('.')[1] : ''} seed${seed} fold${fold}"
    label 'process_gpu'
    container 'ghcr.io/pertprobe/base:0.1.0'

    input:
    tuple val(meta), path(pseudobulk), path(by_batch), path(splits), val(seed), val(fold), val(predictor), path(embedding, stageAs: 'embedding/*')

    output:
    tuple val(meta), path("*.prediction.parquet"), emit: prediction
    path "versions.yml"                          , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    predictScript(task, meta, pseudobulk, by_batch, splits, seed, fold, predictor, embedding)

    stub:
    predictStub(task, meta, seed, fold, predictor, embedding)
}
