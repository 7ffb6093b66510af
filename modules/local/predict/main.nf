process PREDICT {
    tag "${meta.id} ${predictor} seed${seed} fold${fold}"
    label 'process_single'
    container 'ghcr.io/pertprobe/base:0.1.0'

    input:
    tuple val(meta), path(pseudobulk), path(splits), val(seed), val(fold), val(predictor)

    output:
    tuple val(meta), path("*.prediction.parquet"), emit: prediction
    path "versions.yml"                          , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}.${predictor}.seed${seed}.fold${fold}"
    """
    predict.py \\
        --pseudobulk ${pseudobulk} \\
        --splits ${splits} \\
        --seed ${seed} \\
        --fold ${fold} \\
        --predictor ${predictor} \\
        --dataset ${meta.id} \\
        --out ${prefix}.prediction.parquet \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}.${predictor}.seed${seed}.fold${fold}"
    """
    touch ${prefix}.prediction.parquet
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
